"""Online feature lookups: Lakeforge's SQLite and Redis online stores vs Feast's.

Usage: ``.venv/bin/python bench/features_online.py [--quick] [--feast-python PATH]``.

A feature table of 100,000 keys (one row per key: ``k``, ``ts``, ``f1..f3``, seeded
with ``numpy.random.default_rng(7)``) is written once under ``bench/.data/online_<keys>/``
(``online.parquet`` and a Lakeforge project holding ``dev.fs.online``). Each store is
loaded untimed, then read with the same keys: single-key lookups and batches of 100
keys, each call timed on its own; p50 and p99 in milliseconds.

Sides, each in its own process (a read worker, ``_online_worker.py``):

* ``lakeforge-sqlite``: ``ws.publish_table`` to the project's SQLite online store, then
  ``online_store(ws).read(table, keys_table, keys=["k"])``, in process;
* ``lakeforge-redis``: ``publish_table`` to a ``RedisOnlineStore`` at
  ``redis://127.0.0.1:6379/0`` in a namespace of its own, read over loopback;
* ``feast-sqlite`` / ``feast-redis``: ``bench/feast_side.py online`` in the Feast venv:
  ``write_to_online_store`` then ``get_online_features(...).to_dict()``.

The Lakeforge and Feast workers of one store are both loaded, then read in alternating
blocks (50 single-key reads, 5 batches; the side that goes first alternates too), so a
load spike on a shared machine falls on both sides alike.

Redis keys written by the run (its own namespace / Feast project) are removed at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, DATA_DIR, SideResult, machine, peak_rss_mib, rss_mib, versions
from _online_worker import done, serve

TABLE = "dev.fs.online"
FEATURES = ["f1", "f2", "f3"]
BATCH = 100
BASIC = ["single", "batch"]  # the modes a worker has unless it says otherwise (Feast's)
TARGET_P99_MS = {"sqlite": 1.0, "redis": 0.5}
TARGET_FEAST_SPEEDUP = 2.0
# what each worker times: single keys through ``lookup`` (Python rows in and out, as Feast's
# ``to_dict``) and through ``read`` (Arrow in and out; Lakeforge only), batches through ``read``
MODES = {"single": 50, "single_arrow": 50, "batch": 5}  # reads per alternating block
DEFAULT_FEAST_PYTHON = BENCH_DIR / ".venv-feast" / "bin" / "python"
REDIS_PYLIB = DATA_DIR / "pylib"  # pip install --target bench/.data/pylib redis


def build(keys: int, singles: int, batches: int, rebuild: bool) -> Path:
    """``bench/.data/online_<keys>/``: the data, the lookup plan and the Lakeforge project."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import lakeforge

    root = DATA_DIR / f"online_{keys}"
    plan_path = root / "plan.json"
    if not rebuild and plan_path.exists():
        plan = json.loads(plan_path.read_text())
        if len(plan["single"]) == singles and len(plan["batch"]) == batches:
            return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    start_us = 1_704_067_200 * 1_000_000
    data = pa.table(
        {
            "k": np.arange(keys, dtype=np.int64),
            "ts": pa.array(
                start_us + rng.integers(0, 365 * 86_400 * 10**6, keys), pa.timestamp("us", "UTC")
            ),
            "f1": rng.standard_normal(keys),
            "f2": rng.random(keys) * 100.0,
            "f3": rng.integers(0, 1000, keys).astype(np.float64),
        }
    )
    pq.write_table(data, root / "online.parquet")
    plan = {
        "single": rng.integers(0, keys, singles).tolist(),
        "batch": [rng.choice(keys, BATCH, replace=False).tolist() for _ in range(batches)],
    }
    plan_path.write_text(json.dumps(plan))
    lakeforge.init_project("bench_online", root)
    with lakeforge.connect("dev", project_dir=root / "bench_online") as ws:
        ws.features.create(TABLE, data, primary_keys="k", timestamp_key="ts")
    return root


def percentiles(samples: list[float]) -> dict[str, float]:
    import numpy as np

    ms = np.asarray(samples) * 1000.0
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99))}


def lakeforge_side(root: Path, kind: str, redis_url: str, namespace: str, warmup: int) -> None:
    """Publish to the store (untimed), then serve timed single-key and batch reads."""
    import pyarrow as pa

    import lakeforge
    from lakeforge.features import online_store, publish_table
    from lakeforge.features.online import open_online_store

    imported = rss_mib()
    plan = json.loads((root / "plan.json").read_text())
    single_rows = [[{"k": k}] for k in plan["single"]]
    singles = [pa.table({"k": pa.array([k], pa.int64())}) for k in plan["single"]]
    batches = [pa.table({"k": pa.array(keys, pa.int64())}) for keys in plan["batch"]]
    with lakeforge.connect("dev", project_dir=root / "bench_online") as ws:
        store = (
            online_store(ws)
            if kind == "sqlite"
            else open_online_store(redis_url, namespace=namespace)
        )
        try:
            start = time.perf_counter()
            publish_table(ws, TABLE, mode="snapshot", store=store)
            load_s = time.perf_counter() - start
            for keys in singles[:warmup] + batches[:warmup]:
                store.read(TABLE, keys, keys=["k"])
            for rows in single_rows[:warmup]:
                store.lookup(TABLE, rows)
            probe = store.read(TABLE, batches[0], keys=["k"])
            serve(
                {
                    "load_s": load_s,
                    "import_mib": imported,
                    "probe": {f: probe.column(f).to_pylist() for f in FEATURES},
                    "modes": list(MODES),
                },
                {
                    "single": lambda i: store.lookup(TABLE, single_rows[i]),
                    "single_arrow": lambda i: store.read(TABLE, singles[i], keys=["k"]),
                    "batch": lambda i: store.read(TABLE, batches[i], keys=["k"]),
                },
            )
        finally:
            if kind == "redis":
                store.drop(TABLE)
            store.close()
    done(peak_rss_mib())


class Worker:
    """A side's read worker process, driven over its stdin/stdout."""

    def __init__(self, name: str, cmd: list[str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = self._expect("READY")
        self.times: dict[str, list[float]] = {m: [] for m in self.ready.get("modes", BASIC)}

    def _expect(self, mark: str) -> Any:
        """The JSON after the next ``mark`` line; other output is echoed."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(mark + " "):
                return json.loads(line[len(mark) + 1 :])
            print(line, end="")
        raise RuntimeError(f"{self.name}: exited ({self.proc.wait()}) before {mark}")

    def run(self, mode: str, start: int, stop: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{mode} {start} {stop}\n")
        self.proc.stdin.flush()
        self.times[mode] += self._expect("TIMES")

    def finish(self) -> SideResult:
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.close()
        peak = self._expect("DONE")["peak_mib"]
        self.proc.wait()
        extra = {mode: percentiles(t) for mode, t in self.times.items()}
        extra |= {"load_s": self.ready["load_s"], "probe": self.ready["probe"]}
        return SideResult(
            self.name,
            len(self.times["single"]),
            self.times["single"],
            peak,
            self.ready["import_mib"],
            extra,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def interleave(workers: list[Worker], singles: int, batches: int) -> None:
    """Run every read on every worker, in alternating blocks."""
    for mode, block in MODES.items():
        total = batches if mode == "batch" else singles
        for j, start in enumerate(range(0, total, block)):
            for worker in workers if j % 2 == 0 else workers[::-1]:
                if mode in worker.times:
                    worker.run(mode, start, min(start + block, total))


def redis_cleanup(redis_url: str, patterns: list[str]) -> int:
    """Delete the keys matching ``patterns``; return how many were removed."""
    import redis

    client = redis.Redis.from_url(redis_url)
    removed = 0
    try:
        for pattern in patterns:
            names = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(names), 1000):
                removed += int(client.unlink(*names[i : i + 1000]))
    finally:
        client.close()
    return removed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="500 single / 50 batch reads")
    parser.add_argument("--keys", type=int, default=100_000, help="keys in the table (100,000)")
    parser.add_argument("--singles", type=int, help="single-key reads (default 2,000; quick 500)")
    parser.add_argument("--batches", type=int, help="100-key reads (default 200; quick 50)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed reads of each kind first")
    parser.add_argument("--stores", default="sqlite,redis", help="comma list (sqlite,redis)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--feast-python",
        default=str(DEFAULT_FEAST_PYTHON),
        help="Python of a venv with Feast (default bench/.venv-feast/bin/python)",
    )
    parser.add_argument("--no-feast", action="store_true", help="skip the Feast sides")
    parser.add_argument("--rebuild", action="store_true", help="write the data again")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--side", choices=["sqlite", "redis"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--namespace", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    singles = args.singles or (500 if args.quick else 2000)
    batches = args.batches or (50 if args.quick else 200)

    if args.side:
        lakeforge_side(args.root, args.side, args.redis_url, args.namespace, args.warmup)
        return

    stores = [s for s in args.stores.split(",") if s]
    if importlib.util.find_spec("redis") is None and (REDIS_PYLIB / "redis").exists():
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in [str(REDIS_PYLIB), os.environ.get("PYTHONPATH", "")] if p
        )
        sys.path.insert(0, str(REDIS_PYLIB))
    if "redis" in stores and importlib.util.find_spec("redis") is None:
        raise SystemExit(
            "the Redis side needs the 'redis' package: pip install 'lakeforge[redis]', or "
            "pip install --target bench/.data/pylib redis"
        )
    print(
        f"features_online benchmark: {args.keys:,} keys; {singles:,} single-key and {batches} "
        f"x {BATCH}-key reads per store after {args.warmup} warm-up each, the sides "
        f"interleaved; {machine()}"
    )
    print(versions("pyarrow", "duckdb", "redis", "hiredis"))
    root = build(args.keys, singles, batches, args.rebuild)
    tag = f"lfbench_{os.getpid()}"
    feast_ok = not args.no_feast and Path(args.feast_python).exists()
    results: dict[str, SideResult] = {}
    try:
        for kind in stores:
            common = ["--root", str(root), "--warmup", str(args.warmup)]
            common += ["--redis-url", args.redis_url, "--namespace", tag]
            workers = [
                Worker(f"lakeforge-{kind}", [sys.executable, __file__, "--side", kind, *common])
            ]
            try:
                if feast_ok:
                    host = args.redis_url.split("://", 1)[1].split("/", 1)[0]
                    feast = [args.feast_python, str(BENCH_DIR / "feast_side.py"), "online"]
                    feast += ["--root", str(root), "--store", kind, "--redis", host]
                    feast += ["--project", tag, "--warmup", str(args.warmup)]
                    try:
                        workers.append(Worker(f"feast-{kind}", feast))
                    except RuntimeError as exc:  # Feast failed: report it, run Lakeforge alone
                        print(exc)
                interleave(workers, singles, batches)
                for worker in workers:
                    results[worker.name] = worker.finish()
            finally:
                for worker in workers:
                    worker.kill()
    finally:
        if "redis" in stores:
            left = redis_cleanup(args.redis_url, [f"lakeforge:{tag}:*", f"*{tag}*"])
            print(f"redis cleanup: {left} leftover key(s) of this run removed")

    print(f"\nOnline lookups, {args.keys:,} keys (ms per call)")
    header = (
        f"{'side':<17} {'single p50':>10} {'single p99':>10} {'batch p50':>10} "
        f"{'batch p99':>10} {'load s':>7} {'peak MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, res in results.items():
        s, b = res.extra["single"], res.extra["batch"]
        print(
            f"{name:<17} {s['p50']:>10.3f} {s['p99']:>10.3f} {b['p50']:>10.3f} "
            f"{b['p99']:>10.3f} {res.extra['load_s']:>7.1f} {res.peak_mib:>9.0f}"
        )
    for name, res in results.items():
        if "single_arrow" in res.extra:
            a = res.extra["single_arrow"]
            print(
                f"{name}: single key through read() (Arrow in and out): p50 {a['p50']:.3f} ms, p99 {a['p99']:.3f} ms"
            )
    print("single: lookup() for Lakeforge (Python rows), get_online_features().to_dict() for Feast")
    if not feast_ok:
        print(f"feast: not run ({'--no-feast' if args.no_feast else 'no ' + args.feast_python})")

    checks: list[tuple[str, bool]] = []
    for kind in stores:
        lf = results[f"lakeforge-{kind}"]
        p99 = lf.extra["single"]["p99"]
        target = TARGET_P99_MS[kind]
        checks.append(
            (f"lakeforge-{kind} single p99 = {p99:.3f} ms (target <= {target} ms)", p99 <= target)
        )
        fe = results.get(f"feast-{kind}")
        if fe is None:
            continue
        same = _same_probe(lf.extra["probe"], fe.extra["probe"])
        checks.append((f"{kind}: lakeforge and feast return the same values for batch 1", same))
        for mode in ("single", "batch"):
            for q in ("p50", "p99"):
                speed = fe.extra[mode][q] / lf.extra[mode][q]
                checks.append(
                    (
                        f"{kind} {mode} {q}: feast/lakeforge = {speed:.1f}x "
                        f"(target >= {TARGET_FEAST_SPEEDUP:.0f}x)",
                        speed >= TARGET_FEAST_SPEEDUP,
                    )
                )
    print()
    for text, ok in checks:
        print(f"{text}: {'PASS' if ok else 'FAIL'}")
    sys.exit(1 if args.strict and not all(ok for _, ok in checks) else 0)


def _same_probe(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> bool:
    return all(
        len(a[f]) == len(b[f])
        and all(x == y or (x is None and y is None) for x, y in zip(a[f], b[f], strict=True))
        for f in FEATURES
    )


if __name__ == "__main__":
    main()
