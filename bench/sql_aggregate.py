"""Group-by aggregate: ``ws.sql`` over a Delta table vs DuckDB over its Parquet files.

Usage: ``.venv/bin/python bench/sql_aggregate.py [--quick] [--rows N] [--reps N]``.

The table is written once per size with ``ws.tables.write`` under ``bench/.data/`` and
reused by later runs (``--rebuild`` writes it again).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    DATA_DIR,
    SideResult,
    bench_parser,
    emit,
    machine,
    peak_rss_mib,
    rows_and_reps,
    rss_mib,
    run_both,
    scaled_flights,
    summarize,
    time_reps,
    versions,
)

TABLE = "dev.silver.flights"
COLUMNS = "carrier, origin, count(*), avg(dep_delay), sum(distance)"
LAKEFORGE_SQL = f"SELECT {COLUMNS} FROM {TABLE} GROUP BY ALL"


def build(rows: int, rebuild: bool) -> Path:
    """The project holding ``dev.silver.flights`` with ``rows`` rows; writes ``files.json``."""
    import lakeforge

    root = DATA_DIR / f"sql_{rows}"
    project = root / "bench_sql"
    files_json = root / "files.json"
    if not rebuild and files_json.exists():
        return project
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    lakeforge.init_project("bench_sql", root)
    with lakeforge.connect(project_dir=project) as ws:
        data = scaled_flights(rows)
        start = time.perf_counter()
        ws.tables.write(TABLE, data, mode="overwrite")
        print(f"wrote {TABLE} ({rows:,} rows) in {time.perf_counter() - start:.1f} s")
        del data
        files = [u.removeprefix("file://") for u in ws.tables.delta(TABLE).file_uris()]
    files_json.write_text(json.dumps(files))
    return project


def _digest(table: Any) -> dict[str, Any]:
    """Group count, total row count and total distance of an aggregate result."""
    import pyarrow.compute as pc

    return {
        "groups": table.num_rows,
        "count": int(pc.sum(table.column(2)).as_py()),
        "distance": int(pc.sum(table.column(4)).as_py()),
    }


def baseline(project: Path, rows: int, reps: int, warmup: int) -> SideResult:
    """DuckDB ``read_parquet`` over the table's current data files."""
    import duckdb

    imported = rss_mib()
    files = json.loads((project.parent / "files.json").read_text())
    query = f"SELECT {COLUMNS} FROM read_parquet({files!r}) GROUP BY ALL"

    def run(_: int) -> Any:
        con = duckdb.connect()
        try:
            return con.sql(query).to_arrow_table()
        finally:
            con.close()

    times, results = time_reps(run, reps, warmup=warmup)
    return SideResult("baseline", rows, times, peak_rss_mib(), imported, _digest(results[-1]))


def lakeforge_side(project: Path, rows: int, reps: int, warmup: int) -> SideResult:
    """``ws.sql`` on the three-part table name."""
    import lakeforge

    imported = rss_mib()
    with lakeforge.connect(project_dir=project) as ws:
        times, results = time_reps(lambda _: ws.sql(LAKEFORGE_SQL), reps, warmup=warmup)
    return SideResult("lakeforge", rows, times, peak_rss_mib(), imported, _digest(results[-1]))


def main() -> None:
    parser = bench_parser(
        __doc__, rows=10_000_000, quick_rows=1_000_000, reps=5, quick_reps=3, what="table"
    )
    parser.add_argument("--rebuild", action="store_true", help="write the table again")
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows, reps = rows_and_reps(args)

    if args.side:
        side = baseline if args.side == "baseline" else lakeforge_side
        emit(side(args.project, rows, reps, args.warmup))
        return

    print(
        f"sql_aggregate benchmark: {rows:,} rows, best of {reps} after {args.warmup} "
        f"warm-up; {machine()}"
    )
    print(versions("pyarrow", "deltalake", "duckdb"))
    project = build(rows, args.rebuild)
    files = json.loads((project.parent / "files.json").read_text())
    size_mib = sum(Path(f).stat().st_size for f in files) / 2**20
    print(f"table: {len(files)} Parquet file(s), {size_mib:.0f} MiB, under {project}")
    base, lf = run_both(__file__, args, rows, reps, ["--project", str(project)])
    if base.extra != lf.extra or base.extra["count"] != rows:
        raise SystemExit(
            f"results disagree: baseline {base.extra}, lakeforge {lf.extra} (expected count {rows})"
        )
    print(f"results agree: {base.extra['groups']} groups, count {base.extra['count']:,}")
    ok = summarize(f"SQL group-by aggregate, {rows:,} rows", base, lf)
    sys.exit(1 if args.strict and not ok else 0)


if __name__ == "__main__":
    main()
