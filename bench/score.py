"""Batch scoring: ``lakeforge score`` vs the naive way and the model's own ``predict``.

Usage: ``.venv/bin/python bench/score.py [--quick] [--rows N] [--reps N] [--models lgbm,pipe]
[--skip-ray] [--skip-stream] [--rebuild]``.

A Delta table of ``rows`` rows (``id`` and 20 float64 features), a LightGBM classifier
(100 trees) and a scikit-learn pipeline (StandardScaler + LogisticRegression), both
registered with alias ``champion``. For each model, every method runs in its own child
process (imports and setup untimed):

* ``floor 1 core``: ``model.predict`` on the rows as an in-memory NumPy array, one thread.
* ``floor 2 cores``: the same with both cores: LightGBM ``num_threads=2``; scikit-learn in
  two processes over the two halves.
* ``naive``: ``DeltaTable.to_pandas()``, ``mlflow.pyfunc.load_model``, ``predict``,
  ``write_deltalake`` of ``id`` + prediction to a new table.
* ``lakeforge``: ``ws.score(model, input=table, output=new table)``, the local engine with
  its default workers (one per core; in-process for a model cheaper than sending it rows),
  end to end (model resolution and load, reading, scoring, idempotent commits).
* ``ray``: the same with ``engine="ray"`` (the Ray start is timed apart).
* ``lakeforge@small``: the same on a tenth of the rows (a fifth with ``--quick``: 200k
  rows, two units, so both workers score), with the workers the full-size run used (a
  pool, or none), for peak memory: 1M vs 10M rows in the full run, 200k vs 1M with
  ``--quick``.

Then streaming, LightGBM: ``run_stream(..., once=True, max_rows=1000)`` over one 1k-row
commit (the start: imports, model load, checks), then again over ``commits`` more 1k-row
commits (1k-row micro-batches), timed.

Peak memory is the largest sum of RSS over the child's whole process tree (its pool
workers, or Ray's processes), sampled every 50 ms from ``/proc``, and the child's own
high-water mark (``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    DATA_DIR,
    RESULT_MARK,
    SideResult,
    bench_parser,
    emit,
    machine,
    peak_rss_mib,
    rows_and_reps,
    rss_mib,
    time_reps,
    versions,
)

FEATURES = [f"f{i}" for i in range(20)]
TABLE = "dev.bench.features"
MODELS = {"lgbm": "dev.ml.lgbm", "pipe": "dev.ml.pipe"}
WRITE_ROWS = 1_000_000  # rows per append when building the table
TARGET_FLOOR = 0.8
METHODS = ("floor1", "floor2", "naive", "lakeforge", "ray")
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


# -- data and models ----------------------------------------------------------------------


def features(rows: int, seed: int, first_id: int = 0) -> Any:
    """``rows`` rows of ``id`` (from ``first_id``) + 20 float64 features (seeded) and a
    binary label."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, len(FEATURES)))
    weights = np.linspace(-1, 1, len(FEATURES))
    label = (x @ weights + rng.standard_normal(rows) > 0).astype("int64")
    columns = {"id": pa.array(np.arange(first_id, first_id + rows, dtype="int64"))}
    columns |= {name: pa.array(x[:, i]) for i, name in enumerate(FEATURES)}
    return pa.table(columns), label


def build(rows: int, rebuild: bool) -> Path:
    """The project holding the table and both models (built once per size)."""
    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import lakeforge

    root = DATA_DIR / f"score_{rows}"
    project = root / "bench_score"
    done = root / "built.json"
    if done.exists() and not rebuild:
        return project
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    lakeforge.init_project("bench_score", root)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    start = time.perf_counter()
    with lakeforge.connect("dev", project_dir=project) as ws:
        for offset in range(0, rows, WRITE_ROWS):
            part, _ = features(min(WRITE_ROWS, rows - offset), seed=offset + 1, first_id=offset)
            ws.tables.write(TABLE, part, mode="append", primary_keys=["id"])
        train, label = features(100_000, seed=0)
        X = train.select(FEATURES).to_pandas()
        with ws.start_run("bench", autolog=False):
            booster = lgb.LGBMClassifier(n_estimators=100, verbose=-1).fit(X, label)
            ws.log_model(booster, MODELS["lgbm"], input_example=X.head(3))
        with ws.start_run("bench", autolog=False):
            pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, label)
            ws.log_model(pipe, MODELS["pipe"], input_example=X.head(3))
        for name in MODELS.values():
            ws.models.set_alias(name, "champion", 1)
    print(f"built {TABLE} ({rows:,} rows) and 2 models in {time.perf_counter() - start:.1f} s")
    done.write_text(json.dumps({"rows": rows}))
    return project


# -- sides (each in its own child process) ------------------------------------------------


def _matrix(ws: Any) -> Any:
    """The table's features as one float64 NumPy array (untimed)."""
    import numpy as np

    data = ws.tables.read(TABLE, columns=FEATURES)
    return np.column_stack([data.column(c).to_numpy() for c in FEATURES])


def _raw_model(ws: Any, model: str) -> Any:
    from lakeforge.inference import resolve_model

    ref = resolve_model(ws, f"{MODELS[model]}@champion")
    import mlflow

    return mlflow.pyfunc.load_model(ref.local_path).get_raw_model()


def _half_predict(args: tuple[int, int]) -> float:
    """Pool task for the two-process floor: predict rows [start, stop) of the shared array."""
    start, stop = args
    began = time.perf_counter()
    _FORKED["model"].predict(_FORKED["x"][start:stop])
    return time.perf_counter() - began


_FORKED: dict[str, Any] = {}  # the model and array the fork-started floor workers inherit


def side_floor(ws: Any, model: str, rows: int, reps: int, warmup: int, cores: int) -> Any:
    x = _matrix(ws)
    raw = _raw_model(ws, model)
    imported = rss_mib()
    if model == "lgbm":
        run = lambda _: raw.predict(x, num_threads=cores)  # noqa: E731
        times, _ = time_reps(run, reps, warmup=warmup)
        return times, imported
    if cores == 1:
        times, _ = time_reps(lambda _: raw.predict(x), reps, warmup=warmup)
        return times, imported
    import multiprocessing

    _FORKED.update(model=raw, x=x)
    halves = [(0, rows // 2), (rows // 2, rows)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        times, _ = time_reps(lambda _: pool.map(_half_predict, halves), reps, warmup=warmup)
    return times, imported


def side_naive(ws: Any, model: str, rows: int, reps: int, warmup: int, out: Path) -> Any:
    import mlflow
    import pandas as pd
    from deltalake import DeltaTable, write_deltalake

    from lakeforge.tracking import use_target

    location = ws.tables.location(TABLE)
    imported = rss_mib()

    def run(rep: int) -> int:
        frame = DeltaTable(location).to_pandas()
        with use_target(ws.target):
            pyfunc = mlflow.pyfunc.load_model(f"models:/{MODELS[model]}@champion")
        scored = pd.DataFrame({"id": frame["id"], "prediction": pyfunc.predict(frame[FEATURES])})
        write_deltalake(str(out / f"naive_{rep}"), scored)
        return len(scored)

    times, results = time_reps(run, reps, warmup=warmup)
    assert results[-1] == rows, results
    return times, imported


def side_lakeforge(
    ws: Any, model: str, rows: int, reps: int, warmup: int, engine: str, workers: int | None
) -> Any:
    imported = rss_mib()
    extra: dict[str, Any] = {}
    from lakeforge.inference._local import cores

    if engine == "ray":
        import ray

        began = time.perf_counter()
        ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False)
        extra["ray_start_s"] = time.perf_counter() - began

    def output(rep: int) -> str:
        return f"dev.bench.out_{model}_{engine}_{rep}"

    def setup(rep: int) -> None:
        for name in (output(rep), output(rep) + "_errors"):
            if ws.tables.exists(name):
                ws.tables.drop(name)

    def run(rep: int) -> Any:
        uri = f"{MODELS[model]}@champion"
        # default workers: one per core, unless the model costs less than sending its rows
        return ws.score(uri, input=TABLE, output=output(rep), engine=engine, workers=workers)

    times, results = time_reps(run, reps, setup=setup, warmup=warmup)
    assert results[-1].rows_in == rows and results[-1].rows_failed == 0, results[-1]
    extra["commits"] = len(results[-1].output_versions)
    extra["pooled"] = _forkserver_started()
    for rep in range(warmup + reps):
        setup(rep)
    return times, imported, extra


def _forkserver_started() -> bool:
    """Whether a scoring run here started worker processes (the local engine's pool)."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None) is not None


def side_stream(ws: Any, commits: int) -> Any:
    """A first ``--once`` run over one 1k-row commit (imports, model load, checks: timed
    apart as ``start_s``), then one over ``commits`` more: 1k-row micro-batches, timed."""
    from lakeforge.inference._stream import run_stream

    source, output = "dev.bench.stream_in", "dev.bench.stream_out"
    for name in (source, output, output + "_errors"):
        if ws.tables.exists(name):
            ws.tables.drop(name)
    # only the rows streamed (reading the whole table would set the peak at 10M rows)
    data = ws.tables.read(TABLE, filter=f"id < {(commits + 1) * 1000}").sort_by("id")

    def append(i: int) -> None:
        ws.tables.write(source, data.slice(i * 1000, 1000), mode="append", primary_keys=["id"])

    def stream() -> Any:
        uri = f"{MODELS['lgbm']}@champion"
        return run_stream(ws, uri, input=source, output=output, once=True, max_rows=1000)

    append(0)
    imported = rss_mib()
    began = time.perf_counter()
    stream()
    start_s = time.perf_counter() - began
    for i in range(1, commits + 1):
        append(i)
    began = time.perf_counter()
    result = stream()
    elapsed = time.perf_counter() - began
    assert result.rows_scored == commits * 1000, result
    return [elapsed], imported, {"micro_batches": result.micro_batches, "start_s": start_s}


def run_child(args: argparse.Namespace) -> None:
    """Child side: one method for one model, result on stdout."""
    import warnings

    import lakeforge

    # LightGBM's scikit-learn wrapper warns on every NumPy predict (fitted on a frame)
    warnings.filterwarnings("ignore", message="X does not have valid feature names")
    rows, reps = args.rows, args.reps
    with lakeforge.connect("dev", project_dir=args.project) as ws:
        extra: dict[str, Any] = {}
        if args.method == "stream":
            times, imported, extra = side_stream(ws, args.commits)
            rows = args.commits * 1000
        elif args.method.startswith("floor"):
            cores = int(args.method[-1])
            times, imported = side_floor(ws, args.model, rows, reps, args.warmup, cores)
        elif args.method == "naive":
            out = Path(args.project).parent / "naive_out"
            shutil.rmtree(out, ignore_errors=True)
            times, imported = side_naive(ws, args.model, rows, reps, args.warmup, out)
            shutil.rmtree(out, ignore_errors=True)
        else:
            engine = "ray" if args.method == "ray" else "local"
            times, imported, extra = side_lakeforge(
                ws, args.model, rows, reps, args.warmup, engine, args.workers
            )
    emit(SideResult(args.method, rows, times, peak_rss_mib(), imported, extra))


# -- parent -------------------------------------------------------------------------------


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _tree_rss_mib(root: int) -> float:
    """The summed RSS of ``root`` and all its descendants, in MiB."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(pid, 0) for pid in tree) / 2**20


def run_method(side: str, args: list[str], env: dict[str, str] | None = None) -> SideResult:
    """Run one side in a child process, sampling its process tree's memory."""
    cmd = [sys.executable, __file__, "--method", side, *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mib(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        print(out)
        raise SystemExit(f"side {side!r} failed (exit {proc.returncode}): {' '.join(cmd)}")
    result = SideResult(**json.loads(lines[-1][len(RESULT_MARK) :]))
    result.extra["tree_peak_mib"] = peak[0]
    return result


def report(model: str, results: dict[str, SideResult]) -> list[str]:
    """Print one model's table; return its verdict lines."""
    floor2 = results["floor2"].rows_per_s
    naive = results["naive"].rows_per_s
    print(f"\n{model}: {results['lakeforge'].rows:,} rows")
    header = (
        f"{'method':<18} {'best s':>8} {'rows/s':>12} {'/2-core floor':>13} {'/naive':>7} "
        f"{'tree peak MiB':>13} {'own peak MiB':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, res in results.items():
        print(
            f"{name:<18} {res.best:>8.3f} {res.rows_per_s:>12,.0f} "
            f"{res.rows_per_s / floor2:>13.2f} {res.rows_per_s / naive:>7.2f} "
            f"{res.extra['tree_peak_mib']:>13.0f} {res.peak_mib:>12.0f}"
        )
    lf = results["lakeforge"]
    verdicts = [
        f"{model}: lakeforge / 2-core floor = {lf.rows_per_s / floor2:.2f}x (target >= "
        f"{TARGET_FLOOR}x): {'PASS' if lf.rows_per_s / floor2 >= TARGET_FLOOR else 'FAIL'}",
        f"{model}: lakeforge / naive = {lf.rows_per_s / naive:.2f}x (target > 1x): "
        f"{'PASS' if lf.rows_per_s > naive else 'FAIL'}",
    ]
    peak = lf.extra["tree_peak_mib"]
    verdicts.append(
        f"{model}: lakeforge peak {peak:,.0f} MiB (target <= 2048): "
        f"{'PASS' if peak <= 2048 else 'FAIL'}"
    )
    if "ray" in results:
        ray = results["ray"]
        verdicts.append(
            f"{model}: ray engine {ray.best:.2f} s vs local {lf.best:.2f} s: "
            f"+{ray.best - lf.best:.2f} s ({ray.best / lf.best:.2f}x), plus "
            f"{ray.extra['ray_start_s']:.1f} s to start Ray"
        )
    small = results.get("lakeforge@small")
    if small is not None:
        verdicts.append(
            f"{model}: lakeforge peak at {small.rows:,} rows {small.extra['tree_peak_mib']:,.0f} "
            f"MiB vs {lf.rows:,} rows {peak:,.0f} MiB ({peak / small.extra['tree_peak_mib']:.2f}x)"
        )
    return verdicts


def main() -> None:
    parser = bench_parser(
        __doc__, rows=10_000_000, quick_rows=1_000_000, reps=3, quick_reps=1, what="table"
    )
    parser.add_argument("--models", default="lgbm,pipe", help="lgbm,pipe (default both)")
    parser.add_argument("--skip-ray", action="store_true", help="no Ray engine run")
    parser.add_argument("--skip-stream", action="store_true", help="no streaming run")
    parser.add_argument("--commits", type=int, help="1k-row commits to stream (100; quick 20)")
    parser.add_argument("--rebuild", action="store_true", help="build the table and models again")
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=[*METHODS, "stream"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        run_child(args)
        return
    rows, reps = rows_and_reps(args)
    commits = args.commits or (20 if args.quick else 100)
    print(
        f"score benchmark: {rows:,} rows, best of {reps} after {args.warmup} warm-up; {machine()}"
    )
    print(versions("pyarrow", "deltalake", "lightgbm", "sklearn", "mlflow", "ray"))
    project = build(rows, args.rebuild)
    small_rows = rows // 5 if args.quick else rows // 10
    small_project = build(small_rows, args.rebuild)
    common = ["--project", str(project), "--rows", str(rows), "--reps", str(reps)]
    common += ["--warmup", str(args.warmup)]
    verdicts: list[str] = []
    for model in args.models.split(","):
        results: dict[str, SideResult] = {}
        for method in METHODS:
            if method == "ray" and args.skip_ray:
                continue
            env = (
                ONE_THREAD
                if method == "floor1" or (method == "floor2" and model == "pipe")
                else None
            )
            print(f"... {model} {method}", flush=True)
            results[method] = run_method(method, [*common, "--model", model], env)
        small = ["--project", str(small_project), "--rows", str(small_rows), "--reps", str(reps)]
        small += ["--warmup", str(args.warmup), "--model", model]
        # the same process layout as the full-size run, so the peaks compare like with like
        pooled = results["lakeforge"].extra["pooled"]
        small += ["--workers", str(_cores() if pooled else 1)]
        results["lakeforge@small"] = run_method("lakeforge", small)
        verdicts += report(model, results)
    if not args.skip_stream:
        print(f"... streaming {commits} commits of 1k rows", flush=True)
        stream = run_method("stream", [*common, "--commits", str(commits), "--model", "lgbm"])
        verdicts.append(
            f"streaming (lgbm, 1k-row micro-batches): {stream.rows_per_s:,.0f} rows/s, "
            f"{stream.best / stream.extra['micro_batches'] * 1000:.0f} ms per micro-batch "
            f"({stream.extra['micro_batches']} micro-batches), peak "
            f"{stream.extra['tree_peak_mib']:,.0f} MiB; the first run (imports, model load, "
            f"one micro-batch) {stream.extra['start_s']:.1f} s"
        )
    print("\n" + "\n".join(verdicts))
    failed = any(v.endswith("FAIL") for v in verdicts)
    sys.exit(1 if args.strict and failed else 0)


if __name__ == "__main__":
    main()
