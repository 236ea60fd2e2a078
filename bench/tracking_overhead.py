"""Tracking overhead: the demo model trained alone vs inside a Lakeforge run with lineage.

Usage: ``.venv/bin/python bench/tracking_overhead.py [--quick] [--rows N] [--reps N]``.

Both sides train the demo's late-arrival model (scikit-learn's
``HistGradientBoostingClassifier`` on five flight features, trained on January to
October, scored by ROC AUC on November and December) on the same real flights, read
from the same Delta table. The baseline reads the table's Parquet files with DuckDB,
fits and predicts. Lakeforge does the same inside ``ws.start_run("train")`` (git and
environment lineage, the table version as a dataset input, scikit-learn autolog),
reads with ``ws.sql`` and registers a new version with ``ws.log_model``. The added
seconds per run are the target (under 1 s); imports and the first run (which creates
the MLflow store, the experiment and the registered model) are reported apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    DATA_DIR,
    SideResult,
    bench_parser,
    emit,
    fresh_dir,
    load_flights,
    machine,
    peak_rss_mib,
    rows_and_reps,
    rss_mib,
    run_side,
    scaled_flights,
    time_reps,
    versions,
)

TARGET_S = 1.0
TABLE = "dev.silver.flights"
MODEL = "dev.ml.flight_delay"
FEATURES = ["dep_delay", "distance", "hour", "month", "sched_dep_time"]  # as lakeforge.demo
QUERY = f"""SELECT {", ".join(FEATURES)}, (arr_delay > 15)::INT AS late
            FROM {{table}} WHERE arr_delay IS NOT NULL"""
TRUSTED = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
RUNS_DIR = DATA_DIR / "runs" / "tracking"


# -- data -----------------------------------------------------------------------------


def flights_sample(rows: int) -> Any:
    """``rows`` real flights spread over the whole year (every k-th), or more by repeating."""
    import pyarrow as pa

    base = load_flights()
    if rows > base.num_rows:
        return scaled_flights(rows)
    step = base.num_rows / rows
    return base.take(pa.array([int(i * step) for i in range(rows)]))


def build(rows: int) -> Path:
    """A fresh project whose ``dev.silver.flights`` holds ``rows`` flights; writes files.json."""
    import lakeforge

    root = fresh_dir(RUNS_DIR)
    project = lakeforge.init_project("bench_tracking", root)
    with lakeforge.connect(project_dir=project) as ws:
        ws.tables.write(TABLE, flights_sample(rows), mode="overwrite")
        files = [u.removeprefix("file://") for u in ws.tables.delta(TABLE).file_uris()]
    (root / "files.json").write_text(json.dumps(files))
    return project


# -- the training both sides do -------------------------------------------------------


def train(read: Callable[[], Any]) -> tuple[Any, Any, float]:
    """Read the data (Arrow), fit the demo model, score it on the held-out months."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    data = read().to_pandas()
    data[FEATURES] = data[FEATURES].astype("float64")
    train_set, test = data[data.month <= 10], data[data.month > 10]
    model = HistGradientBoostingClassifier(max_iter=100, random_state=7)
    model.fit(train_set[FEATURES], train_set["late"])
    auc = roc_auc_score(test["late"], model.predict_proba(test[FEATURES])[:, 1])
    return model, train_set[FEATURES], float(auc)


def baseline(project: Path, rows: int, reps: int, warmup: int) -> SideResult:
    """DuckDB over the table's Parquet files, then fit and predict."""
    start = time.perf_counter()
    import duckdb
    import sklearn.ensemble  # noqa: F401
    import sklearn.metrics  # noqa: F401

    import_s = time.perf_counter() - start
    imported = rss_mib()
    files = json.loads((project.parent / "files.json").read_text())
    query = QUERY.format(table=f"read_parquet({files!r})")

    def read() -> Any:
        con = duckdb.connect()
        try:
            return con.sql(query).to_arrow_table()
        finally:
            con.close()

    times, results = time_reps(lambda _: train(read)[2], warmup + reps, warmup=0)
    extra = {"import_s": import_s, "warmup_s": times[:warmup], "auc": results[-1]}
    return SideResult("baseline", rows, times[warmup:], peak_rss_mib(), imported, extra)


def lakeforge_side(
    project: Path, rows: int, reps: int, warmup: int, autolog: bool = True, profile: bool = False
) -> SideResult:
    """The same training in a Lakeforge run: lineage, autolog, ``ws.sql``, registration."""
    start = time.perf_counter()
    import mlflow.sklearn  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import sklearn.metrics  # noqa: F401

    import lakeforge
    from lakeforge.tracking import client_for

    import_s = time.perf_counter() - start
    imported = rss_mib()
    with lakeforge.connect(project_dir=project) as ws:

        def run(rep: int) -> float:
            with ws.start_run("train", run_name=f"bench-{rep}", autolog=autolog) as training:
                model, X, auc = train(lambda: ws.sql(QUERY.format(table=TABLE)))
                training.log_metrics({"test_roc_auc": auc})
                ws.log_model(model, MODEL, input_example=X.head(5), skops_trusted_types=TRUSTED)
            return auc

        times, results = time_reps(run, warmup + reps, warmup=0)
        registered = client_for(ws.target).search_model_versions(f"name='{MODEL}'")
        if profile:
            _profile(lambda: run(warmup + reps))
    if len(registered) != warmup + reps:
        raise SystemExit(f"expected {warmup + reps} versions of {MODEL}, found {len(registered)}")
    extra = {"import_s": import_s, "warmup_s": times[:warmup], "auc": results[-1]}
    return SideResult("lakeforge", rows, times[warmup:], peak_rss_mib(), imported, extra)


def _profile(run: Callable[[], object], top: int = 30) -> None:
    """Run once more under cProfile; print the calls with the most cumulative time."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(run)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative")
    stats.print_stats(top)
    print("\nprofile of one more Lakeforge run (cumulative seconds):")
    print(out.getvalue().split("\n", 6)[-1].rstrip())


# -- reporting ------------------------------------------------------------------------


def report(base: SideResult, lf: SideResult) -> bool:
    """Print both sides' runs, the added seconds and the verdict; whether the target is met."""
    header = (
        f"{'side':<10} {'import s':>8} {'warm-up s':>9}  {'timed runs (s)':<32} "
        f"{'mean s':>7} {'peak MiB':>9} {'import MiB':>10}"
    )
    print("\n" + header)
    print("-" * len(header))
    for res in (base, lf):
        runs = ", ".join(f"{t:.2f}" for t in res.times)
        warm = ", ".join(f"{t:.2f}" for t in res.extra["warmup_s"]) or "-"
        print(
            f"{res.side:<10} {res.extra['import_s']:>8.2f} {warm:>9}  {runs:<32} "
            f"{statistics.mean(res.times):>7.2f} {res.peak_mib:>9.0f} {res.import_mib:>10.0f}"
        )
    base_mean = statistics.mean(base.times)
    added = [t - base_mean for t in lf.times]
    mean_added, max_added = statistics.mean(added), max(added)
    print("(added per run = each Lakeforge run minus the baseline's mean run)")
    if base.extra["warmup_s"] and lf.extra["warmup_s"]:
        first = lf.extra["warmup_s"][0] - statistics.mean(lf.times)
        print(
            f"one-time: imports {lf.extra['import_s'] - base.extra['import_s']:+.2f} s over the "
            f"baseline's; Lakeforge's first run {first:+.2f} s over its mean run "
            "(MLflow store, experiment and registered model created)"
        )
    ok = max_added < TARGET_S
    print(
        f"\nadded by tracking + lineage + registration: mean {mean_added:.2f} s, "
        f"max {max_added:.2f} s per run (target < {TARGET_S:.2f} s): {'PASS' if ok else 'FAIL'}"
    )
    return ok


def main() -> None:
    parser = bench_parser(
        __doc__, rows=100_000, quick_rows=100_000, reps=5, quick_reps=2, what="flight"
    )
    parser.add_argument(
        "--no-autolog",
        dest="autolog",
        action="store_false",
        help="Lakeforge runs with autolog=False (no scikit-learn autolog)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile one more Lakeforge run with cProfile"
    )
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    rows, reps = rows_and_reps(args)

    if args.side == "baseline":
        emit(baseline(args.project, rows, reps, args.warmup))
        return
    if args.side == "lakeforge":
        emit(lakeforge_side(args.project, rows, reps, args.warmup, args.autolog, args.profile))
        return

    print(
        f"tracking_overhead benchmark: {rows:,} flights, {reps} timed run(s) per side after "
        f"{args.warmup} warm-up, autolog {'on' if args.autolog else 'off'}; {machine()}"
    )
    print(versions("sklearn", "mlflow", "duckdb", "deltalake"))
    project = build(rows)
    common = ["--rows", str(rows), "--reps", str(reps), "--warmup", str(args.warmup)]
    common += ["--project", str(project)]
    base = run_side(__file__, "baseline", common)
    options = (["--profile"] if args.profile else []) + ([] if args.autolog else ["--no-autolog"])
    lf = run_side(__file__, "lakeforge", common + options)
    if abs(base.extra["auc"] - lf.extra["auc"]) > 1e-9:
        raise SystemExit(f"models disagree: ROC AUC {base.extra['auc']} vs {lf.extra['auc']}")
    print(f"same model on both sides: held-out ROC AUC {lf.extra['auc']:.4f}")
    ok = report(base, lf)
    shutil.rmtree(RUNS_DIR, ignore_errors=True)
    sys.exit(1 if args.strict and not ok else 0)


if __name__ == "__main__":
    main()
