"""The whole walk-through, step by step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace, connect
from lakeforge.demo._data import (
    GOLD_SQL,
    SILVER_RULES,
    flights_data_dir,
    land_months,
    load_flights,
    report_ingest,
    show,
)
from lakeforge.demo._features import feature_store
from lakeforge.demo._jobs import DEMO_JOBS, DEMO_PIPELINES, commit_project, run_jobs
from lakeforge.demo._llm import fake_provider, llm_gateway
from lakeforge.demo._monitoring import DEMO_MONITORS, DEMO_RETRAIN_JOB, DEMO_RETRAIN_TASK, monitor
from lakeforge.demo._scoring import score_flights
from lakeforge.demo._serving import DEMO_ENDPOINTS, serve_endpoint
from lakeforge.demo._training import train_model, use_demo_policy
from lakeforge.demo._vectors import vector_search
from lakeforge.project import init_project


def run_demo(directory: Path, console: Console | None = None) -> Workspace:
    """Build the demo project under ``directory`` (recreated) and walk through the lakehouse."""
    console = console or Console()
    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    project = init_project("flights", directory)
    use_demo_policy(project)
    (project / "pipelines.py").write_text(DEMO_PIPELINES + DEMO_RETRAIN_TASK)
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(DEMO_JOBS + DEMO_RETRAIN_JOB + DEMO_ENDPOINTS + DEMO_MONITORS)
    commit_project(project)
    ws = connect("dev", project_dir=project)
    landing = directory / "landing"
    flights = load_flights()

    console.print(Rule("1. Incremental ingestion into bronze"))
    land_months(flights, landing, range(1, 7))
    report_ingest(console, ws.ingest(landing, "dev.bronze.flights"))
    console.print("  July to December arrive, with one corrupt file:")
    land_months(flights, landing, range(7, 13))
    (landing / "flights_2013_corrupt.csv").write_text('year,month,day\n2013,"unterminated\n')
    report_ingest(console, ws.ingest(landing, "dev.bronze.flights"))
    console.print("  Rerun: nothing new to load.")
    report_ingest(console, ws.ingest(landing, "dev.bronze.flights"))
    data = flights_data_dir()
    for name in ("airlines", "airports", "planes", "weather"):
        report_ingest(console, ws.ingest(data / f"{name}.csv", f"dev.bronze.{name}"))

    console.print(Rule("2. Silver with data-quality expectations"))
    bronze = ws.tables.read("dev.bronze.flights").drop_columns(["_ingest_file", "_ingest_time"])
    result = ws.tables.write(
        "dev.silver.flights", bronze, mode="overwrite", expectations=SILVER_RULES
    )
    console.print(
        f"  {result.rows_in:,} rows in, {result.rows_written:,} written, "
        f"{result.rows_dropped:,} quarantined in dev.silver.flights_quarantine"
    )
    show(
        console,
        ws,
        "Quality log",
        """
        SELECT table_version, rule, action, rows_in, rows_failed, rows_written
        FROM dev.system.quality_log WHERE table_name = 'dev.silver.flights'""",
    )
    ws.tables.write(
        "dev.silver.airlines",
        ws.tables.read("dev.bronze.airlines", columns=["carrier", "name"]),
        mode="overwrite",
        primary_keys=["carrier"],
    )

    console.print(Rule("3. Gold tables with SQL"))
    ws.sql(GOLD_SQL, read_only=False)
    show(console, ws, "Delays by carrier", "SELECT * FROM dev.gold.carrier_delays", rows=16)

    console.print(Rule("4. Time travel, upsert and restore"))
    show(
        console,
        ws,
        "Bronze after the first load vs now",
        """
        SELECT 'v0' AS version, count(*) AS rows FROM dev.bronze.flights@v0
        UNION ALL SELECT 'latest', count(*) FROM dev.bronze.flights""",
    )
    ws.tables.merge(
        "dev.silver.airlines",
        pa.table({"carrier": ["UA", "ZZ"], "name": ["United Airlines", "Lakeforge Air"]}),
    )
    show(
        console,
        ws,
        "After an upsert on the primary key",
        "SELECT * FROM dev.silver.airlines WHERE carrier IN ('UA', 'ZZ')",
    )
    restored = ws.tables.restore("dev.silver.airlines", version=0)
    show(
        console,
        ws,
        f"Restored to version 0 (now version {restored.version})",
        "SELECT * FROM dev.silver.airlines WHERE carrier IN ('UA', 'ZZ')",
    )
    train_model(ws, console)
    run_jobs(ws, console)
    feature_store(ws, console)
    serve_endpoint(ws, console)
    score_flights(ws, console)
    monitor(ws, console)
    provider, provider_url = fake_provider()  # a local stand-in for an LLM provider
    try:
        llm_gateway(ws, console, provider_url)
        vector_search(ws, console)
    finally:
        provider.terminate()
        provider.wait(timeout=30)
    console.print(Rule("Done"))
    console.print(
        f"Project: {project}\nTry: lakeforge --project-dir {project} tables list\n"
        f"     lakeforge --project-dir {project} vectors query gold.travel_docs_index "
        "'delays in winter' -k 3\n"
        f"     lakeforge --project-dir {project} serve   (then POST keys to "
        "/serving-endpoints/departure_delay/invocations)"
    )
    return ws
