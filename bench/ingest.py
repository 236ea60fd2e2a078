"""CSV ingestion: ``ws.ingest`` vs ``pyarrow.csv.read_csv`` + ``deltalake.write_deltalake``.

Usage: ``.venv/bin/python bench/ingest.py [--quick] [--rows N] [--reps N]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import (
    DATA_DIR,
    SideResult,
    bench_parser,
    emit,
    flights_csv,
    fresh_dir,
    machine,
    peak_rss_mib,
    rows_and_reps,
    rss_mib,
    run_both,
    summarize,
    time_reps,
    versions,
)

RUNS_DIR = DATA_DIR / "runs" / "ingest"
TABLE = "dev.bronze.flights"


def baseline(source: Path, rows: int, reps: int, warmup: int) -> SideResult:
    """Read the CSV with pyarrow and write it to a fresh Delta table with delta-rs."""
    import pyarrow.csv as pacsv
    from deltalake import write_deltalake

    imported = rss_mib()
    csv = source / "flights.csv"
    dest = RUNS_DIR / "baseline"

    def run(rep: int) -> int:
        table = pacsv.read_csv(csv)
        write_deltalake(str(dest / f"rep{rep}"), table)
        return int(table.num_rows)

    times, counts = time_reps(run, reps, setup=lambda _: fresh_dir(dest), warmup=warmup)
    _check_rows(counts, rows)
    return SideResult("baseline", rows, times, peak_rss_mib(), imported)


def lakeforge_side(source: Path, rows: int, reps: int, warmup: int) -> SideResult:
    """Ingest the CSV folder into a table of a fresh Lakeforge project."""
    import lakeforge

    imported = rss_mib()
    dest = RUNS_DIR / "lakeforge"
    opened: list[lakeforge.Workspace] = []

    def setup(rep: int) -> None:
        while opened:
            opened.pop().close()
        fresh_dir(dest)
        opened.append(lakeforge.connect(project_dir=lakeforge.init_project("bench_ingest", dest)))

    def run(_: int) -> int:
        return opened[-1].ingest(source, TABLE).rows

    times, counts = time_reps(run, reps, setup=setup, warmup=warmup)
    while opened:
        opened.pop().close()
    _check_rows(counts, rows)
    return SideResult("lakeforge", rows, times, peak_rss_mib(), imported)


def _check_rows(counts: list[int], rows: int) -> None:
    if any(n != rows for n in counts):
        raise SystemExit(f"row count mismatch: expected {rows} per run, got {counts}")


def main() -> None:
    parser = bench_parser(
        __doc__, rows=1_000_000, quick_rows=200_000, reps=3, quick_reps=1, what="CSV"
    )
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows, reps = rows_and_reps(args)

    if args.side:
        side = baseline if args.side == "baseline" else lakeforge_side
        emit(side(args.source, rows, reps, args.warmup))
        return

    print(
        f"ingest benchmark: {rows:,} rows, best of {reps} after {args.warmup} warm-up; {machine()}"
    )
    print(versions("pyarrow", "deltalake", "duckdb"))
    source = flights_csv(rows)
    size_mib = (source / "flights.csv").stat().st_size / 2**20
    print(f"source: {source / 'flights.csv'} ({size_mib:.0f} MiB)")
    base, lf = run_both(__file__, args, rows, reps, ["--source", str(source)])
    ok = summarize(f"CSV ingest, {rows:,} rows", base, lf)
    sys.exit(1 if args.strict and not ok else 0)


if __name__ == "__main__":
    main()
