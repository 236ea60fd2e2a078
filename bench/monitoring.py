"""Drift of a whole table: Lakeforge's monitoring engine vs Evidently's DataDriftPreset.

Usage: ``.venv/bin/python bench/monitoring.py [--quick] [--rows N] [--evidently-python PATH]``.

Seeded synthetic data (``numpy.random.default_rng(16)``), written once per size under
``bench/.data/monitoring_<rows>/``: a reference and a current window of ``rows`` rows each
(1M; ``--quick`` 100k) with 50 columns: 30 numeric (normal, wide integers, 4-value and
binary integers, skewed; some with nulls) and 20 categorical strings (2 to 5,000
values; some with nulls). Six columns of the current window are shifted
(``SHIFTED``); a third window (``next``) is the current one's distribution a day later.

Sides, each in its own process (its peak RSS is its own):

* ``evidently``: ``bench/evidently_side.py`` in the venv holding Evidently (0.7 does not
  import under pandas 3; build it with ``python3 -m venv .venv-evidently &&
  .venv-evidently/bin/pip install -r bench/requirements-evidently.txt``): pandas frames
  read untimed, then timed ``Dataset.from_pandas`` x2 + ``Report([DataDriftPreset(
  columns, data definition)], include_tests=True).run``;
* ``engine``: the same Parquet read into Arrow tables untimed, then timed: every
  column's ``summarize`` on both windows, ``drift_row``, and ``dataset_drift``;
* ``refresh`` (``--refresh on``, the default): the windows as Delta tables in a
  Lakeforge project (reference = the baseline table; current and next = days 1 and 2 of
  a ``time_series`` monitor, granularity ``1 day``), timed: ``set_baseline`` +
  ``refresh(full=True)`` of day 1, then day 2 appended and an incremental ``refresh``.

The verdicts (method and drift detected, per column) of the engine and Evidently must
agree; the refresh's BASELINE rows of day 1 must equal the engine's.
Targets: Evidently time / engine time >= 30x, engine peak RSS <= 2 GiB, 0 differing
columns. Evidently runs watched, killed above 12 GiB RSS.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    DATA_DIR,
    SideResult,
    emit,
    machine,
    peak_rss_mib,
    rss_mib,
    run_side,
    time_reps,
    versions,
)
from features_pit import run_watched

ROWS, QUICK_ROWS = 1_000_000, 100_000
N_NUMERIC, N_CATEGORICAL = 30, 20
SHIFTED = ("n00", "n10", "n18", "n27", "c00", "c05")
MEMORY_CAP_MIB = 12 * 1024
TARGET_SPEEDUP = 30.0
TARGET_PEAK_MIB = 2 * 1024
DEFAULT_EVIDENTLY_PYTHON = BENCH_DIR.parent / ".venv-evidently" / "bin" / "python"
DAY_1 = datetime(2026, 1, 1, tzinfo=UTC)


# -- data -----------------------------------------------------------------------------


def make_window(rows: int, seed: int, shifted: bool) -> Any:
    """One window: 30 numeric and 20 categorical columns; ``shifted`` moves ``SHIFTED``."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i in range(N_NUMERIC):
        name = f"n{i:02d}"
        move = shifted and name in SHIFTED
        if i < 10:
            values: Any = rng.normal(i + (0.3 if move else 0.0), 1.0 + i / 10, rows)
        elif i < 18:
            low = 50 if move else 0
            values = rng.integers(low, 1000 + low, rows)
        elif i < 24:
            p = [0.25, 0.25, 0.25, 0.25] if not move else [0.4, 0.25, 0.2, 0.15]
            values = rng.choice(4, rows, p=p)
        elif i < 27:
            values = (rng.random(rows) < 0.3).astype(np.int64)
        else:
            values = rng.lognormal(0.0, 1.2 if move else 1.0, rows)
        mask = rng.random(rows) < 0.02 if i % 5 == 0 else None
        columns[name] = pa.array(values, mask=mask)
    sizes = (2, 3, 5, 10, 20, 50, 100, 1000, 5000)
    for j in range(N_CATEGORICAL):
        name = f"c{j:02d}"
        k = sizes[j % len(sizes)]
        weights = 1.0 / np.arange(1, k + 2)  # Zipf-like; the last value is the "new" one
        weights[-1] = 0.0
        if shifted and name == "c00":
            weights[:k] = weights[:k][::-1]
        if shifted and name == "c05":
            weights[-1] = weights[:k].sum() * 0.25
        labels = np.array([f"{name}_{v}" for v in range(k + 1)])
        picks = rng.choice(k + 1, rows, p=weights / weights.sum())
        mask = rng.random(rows) < 0.01 if j % 4 == 0 else None
        columns[name] = pa.array(labels[picks], mask=mask)
    return pa.table(columns)


def build(rows: int) -> Path:
    """The three windows as Parquet (written once per size, then reused)."""
    import pyarrow.parquet as pq

    root = DATA_DIR / f"monitoring_{rows}"
    done = root / "meta.json"
    if done.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for name, seed, shifted in (("reference", 1, False), ("current", 2, True), ("next", 3, True)):
        pq.write_table(make_window(rows, seed, shifted), root / f"{name}.parquet")
    done.write_text(json.dumps({"rows": rows, "shifted": SHIFTED}))
    return root


def kinds(root: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    from lakeforge.monitoring._stats import infer_kind

    schema = pq.read_schema(root / "reference.parquet")
    return {f.name: str(infer_kind(f.type)) for f in schema}


# -- sides ----------------------------------------------------------------------------


def engine_side(root: Path, reps: int, warmup: int) -> SideResult:
    """Summaries of both windows, a drift row per column and the dataset verdict."""
    import pyarrow.parquet as pq

    from lakeforge.monitoring._drift import dataset_drift, drift_row
    from lakeforge.monitoring._stats import summarize

    imported = rss_mib()
    kind = kinds(root)
    reference = pq.read_table(root / "reference.parquet")
    current = pq.read_table(root / "current.parquet")

    def run(_: int) -> dict[str, Any]:
        rows = {
            column: drift_row(
                summarize(current.column(column), k),  # type: ignore[arg-type]
                summarize(reference.column(column), k),  # type: ignore[arg-type]
            )
            for column, k in kind.items()
        }
        return {"columns": rows, **dataset_drift(rows.values())}

    times, results = time_reps(run, reps, warmup=warmup)
    verdicts = _verdicts(results[-1]["columns"])
    return SideResult(
        "engine",
        current.num_rows,
        times,
        peak_rss_mib(),
        imported,
        extra={"columns": verdicts, "drift_share": results[-1]["drift_share"]},
    )


def refresh_side(root: Path, reps: int, warmup: int) -> SideResult:
    """A time-series monitor over Delta tables: full refresh of day 1, then day 2 appended
    and refreshed incrementally (one fresh project per run)."""
    import time

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import lakeforge
    from lakeforge.monitoring import create_monitor, refresh, set_baseline
    from lakeforge.project import MonitorSpec

    imported = rss_mib()
    columns = list(kinds(root))
    windows = {
        name: pq.read_table(root / f"{name}.parquet") for name in ("reference", "current", "next")
    }

    def stamped(table: pa.Table, day: datetime) -> pa.Table:
        seconds = pc.multiply(pa.array(range(table.num_rows), pa.int64()), 86_399)
        offsets = pc.divide(seconds, table.num_rows).cast(pa.int64())
        start = pa.scalar(int(day.timestamp() * 1_000_000), pa.int64())
        us = pc.add(pc.multiply(offsets, 1_000_000), start)
        return table.append_column("ts", us.cast(pa.timestamp("us", tz="UTC")))

    full_times: list[float] = []
    incremental_times: list[float] = []
    baseline_rows: dict[str, Any] = {}
    for rep in range(warmup + reps):
        runs = DATA_DIR / "monitoring_runs"
        shutil.rmtree(runs, ignore_errors=True)
        runs.mkdir(parents=True)
        project = lakeforge.init_project("bench_monitoring", runs)
        with lakeforge.connect("dev", project_dir=project) as ws:
            ws.tables.write("dev.mon.reference", windows["reference"], mode="overwrite")
            ws.tables.write("dev.mon.events", stamped(windows["current"], DAY_1), mode="overwrite")
            spec = MonitorSpec(
                name="bench",
                table="dev.mon.events",
                profile="time_series",
                timestamp_col="ts",
                granularities=["1 day"],
                baseline_table="dev.mon.reference",
                columns=columns,
            )
            create_monitor(ws, spec)
            start = time.perf_counter()
            set_baseline(ws, "bench")
            result = refresh(ws, "bench", full=True)
            full = time.perf_counter() - start
            ws.tables.write(
                "dev.mon.events", stamped(windows["next"], DAY_1 + timedelta(days=1)), mode="append"
            )
            start = time.perf_counter()
            later = refresh(ws, "bench")
            incremental = time.perf_counter() - start
            if rep >= warmup:
                full_times.append(full)
                incremental_times.append(incremental)
            baseline_rows = {
                r["column_name"]: r
                for r in ws.tables.read(result.tables[1]).to_pylist()
                if r["drift_type"] == "BASELINE"
                and r["window_start"] == DAY_1
                and r["slice_key"] is None
            }
            windows_done = (len(result.windows), len(later.windows))
        shutil.rmtree(runs, ignore_errors=True)
    return SideResult(
        "refresh",
        windows["current"].num_rows,
        full_times,
        peak_rss_mib(),
        imported,
        extra={
            "columns": _verdicts({c: r for c, r in baseline_rows.items() if c != ":table"}),
            "drift_share": baseline_rows.get(":table", {}).get("drift_share"),
            "incremental_times": incremental_times,
            "windows": windows_done,
        },
    )


def _verdicts(rows: dict[str, Any]) -> dict[str, Any]:
    return {
        c: {
            "method": r["drift_method"],
            "score": r["drift_score"],
            "threshold": r["drift_threshold"],
            "detected": r["drift_detected"],
        }
        for c, r in rows.items()
    }


def evidently_side(root: Path, python: str, reps: int) -> tuple[SideResult | None, str]:
    kind = kinds(root)
    case = {
        "reference": str(root / "reference.parquet"),
        "current": str(root / "current.parquet"),
        "numeric": [c for c, k in kind.items() if k == "numeric"],
        "categorical": [c for c, k in kind.items() if k == "categorical"],
    }
    spec = root / "evidently_cases.json"
    spec.write_text(json.dumps([case]))
    cmd = [python, str(BENCH_DIR / "evidently_side.py"), str(spec), "--reps", str(reps)]
    result, why = run_watched(cmd, MEMORY_CAP_MIB)
    if result is not None:
        found = result.extra["cases"][0]
        result.extra = {"columns": found["columns"], "drift_share": found["drift_share"]}
    return result, why


# -- main -----------------------------------------------------------------------------


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(
        c
        for c in a
        if (a[c]["method"], a[c]["detected"])
        != (b.get(c, {}).get("method"), b.get(c, {}).get("detected"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows per window")
    parser.add_argument("--rows", type=int, help=f"rows per window (default {ROWS:,})")
    parser.add_argument("--reps", type=int, default=3, help="timed engine runs (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--evidently-reps", type=int, default=1, help="timed Evidently runs")
    parser.add_argument("--evidently-python", default=str(DEFAULT_EVIDENTLY_PYTHON))
    parser.add_argument("--refresh", choices=["on", "off"], default="on")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--side", choices=["lakeforge", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["engine", "refresh"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side:
        side = engine_side if args.part == "engine" else refresh_side
        emit(side(args.root, args.reps, args.warmup))
        return

    rows = args.rows or (QUICK_ROWS if args.quick else ROWS)
    print(
        f"monitoring benchmark: reference {rows:,} rows + current {rows:,} rows, "
        f"{N_NUMERIC} numeric + {N_CATEGORICAL} categorical columns, shifted {', '.join(SHIFTED)}; "
        f"{machine()}"
    )
    print(versions("pyarrow", "numpy", "scipy"))
    root = build(rows)
    common = ["--root", str(root), "--reps", str(args.reps), "--warmup", str(args.warmup)]
    engine = run_side(__file__, "lakeforge", [*common, "--part", "engine"])
    refreshed = None
    if args.refresh == "on":
        refreshed = run_side(
            __file__,
            "lakeforge",
            ["--root", str(root), "--reps", "1", "--warmup", "0", "--part", "refresh"],
        )
    evidently: SideResult | None = None
    note = f"not run: no Python at {args.evidently_python} (see --evidently-python)"
    if Path(args.evidently_python).exists():
        evidently, why = evidently_side(root, args.evidently_python, args.evidently_reps)
        note = f"failed: {why}"

    print(f"\nDrift of {N_NUMERIC + N_CATEGORICAL} columns, {rows:,} + {rows:,} rows")
    header = f"{'side':<22} {'best s':>8} {'all runs (s)':<24} {'peak MiB':>9} {'import MiB':>10}"
    print(header)
    print("-" * len(header))
    lines: list[tuple[str, SideResult]] = [("engine (Arrow)", engine)]
    if refreshed is not None:
        lines.append(("refresh full (Delta)", refreshed))
    if evidently is not None:
        lines.append(("evidently", evidently))
    for label, res in lines:
        runs = ", ".join(f"{t:.2f}" for t in res.times)
        print(
            f"{label:<22} {res.best:>8.3f} {runs:<24} {res.peak_mib:>9.0f} {res.import_mib:>10.0f}"
        )
    if refreshed is not None:
        inc = refreshed.extra["incremental_times"]
        print(
            f"{'refresh incremental':<22} {min(inc):>8.3f} {', '.join(f'{t:.2f}' for t in inc):<24} "
            f"(day 2 appended; windows recomputed full/incremental: {refreshed.extra['windows']})"
        )
    if evidently is None:
        print(f"evidently              {note}")

    checks = [
        (
            f"engine peak RSS = {engine.peak_mib:,.0f} MiB (target <= {TARGET_PEAK_MIB:,} MiB)",
            engine.peak_mib <= TARGET_PEAK_MIB,
        )
    ]
    if refreshed is not None:
        diff = differing(engine.extra["columns"], refreshed.extra["columns"])
        checks.append(
            (f"refresh BASELINE verdicts differing from the engine's: {len(diff)} {diff}", not diff)
        )
    if evidently is not None:
        speedup = evidently.best / engine.best
        diff = differing(engine.extra["columns"], evidently.extra["columns"])
        checks += [
            (
                f"evidently/engine time = {speedup:.1f}x (target >= {TARGET_SPEEDUP:.0f}x)",
                speedup >= TARGET_SPEEDUP,
            ),
            (f"columns whose verdict differs from Evidently's: {len(diff)} {diff}", not diff),
        ]
        if refreshed is not None:
            ratio = evidently.best / refreshed.best
            print(f"\nevidently / full refresh through Delta = {ratio:.1f}x")
        print(
            f"drift share: engine {engine.extra['drift_share']:.3f}, "
            f"evidently {evidently.extra['drift_share']:.3f}"
        )
    print()
    ok = True
    for text, passed in checks:
        ok &= passed
        print(f"{'PASS' if passed else 'FAIL'}  {text}")
    if args.strict and not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
