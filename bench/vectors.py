"""Vector search: LanceDB indexes against exact NumPy search, and Lakeforge's index sync.

Usage: ``.venv/bin/python bench/vectors.py [--quick] [--rows N] [--queries N]
[--configs NAME,...] [--skip-sync] [--sync-rows N]``.

Data: clustered synthetic vectors, 384 dimensions (MiniLM's size): ``rows / 100`` random
unit centres, each point a centre plus Gaussian noise (``--noise``, relative to the centre's
norm), unit-normalized; queries are fresh points from the same mixture. Every side runs in
its own child process (imports and data loading untimed):

* ``numpy``: exact search, one query at a time (``X @ q`` then ``argpartition``): the floor
  and the ground truth of recall@10.
* ``lance``: a LanceDB table of the same vectors, per index configuration (type, nprobes,
  refine_factor, ef): index build time, recall@10 against NumPy's top 10, p50/p99 latency
  of single queries through LanceDB's query builder, as ``lakeforge.vectors`` runs them.
* ``sync``: ``lakeforge.vectors.sync`` of a Delta table of generated text notes with
  MiniLM embeddings (rows/s, embedding plus upsert), then the time from a one-row commit
  to that row being returned by a search (commit, incremental sync, search).

The target is recall@10 >= 0.95 at p99 <= 10 ms (issue #18).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import DATA_DIR, SideResult, emit, machine, peak_rss_mib, rss_mib, run_side, versions

DIM = 384
K = 10
TARGET_RECALL, TARGET_P99_MS = 0.95, 10.0
# name -> (index type, index options, search options); "flat" has no index (exact scan)
CONFIGS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "flat": ("none", {}, {}),
    "hnsw_sq-p10": ("IvfHnswSq", {}, {"nprobes": 10}),
    "hnsw_sq-p20": ("IvfHnswSq", {}, {"nprobes": 20}),
    "hnsw_sq-p10-r2": ("IvfHnswSq", {}, {"nprobes": 10, "refine_factor": 2}),
    "hnsw_sq-p20-r5": ("IvfHnswSq", {}, {"nprobes": 20, "refine_factor": 5}),
    "hnsw_sq-p40-r5": ("IvfHnswSq", {}, {"nprobes": 40, "refine_factor": 5}),
    "pq-p20-r5": ("IvfPq", {"num_sub_vectors": 48}, {"nprobes": 20, "refine_factor": 5}),
    "pq-p40-r10": ("IvfPq", {"num_sub_vectors": 48}, {"nprobes": 40, "refine_factor": 10}),
}
NOTE_WORDS = [
    *[
        "airport",
        "runway",
        "terminal",
        "gate",
        "delay",
        "storm",
        "snow",
        "fog",
        "crew",
        "fuel",
        "baggage",
        "security",
    ],
    *[
        "coffee",
        "parking",
        "shuttle",
        "taxi",
        "train",
        "hotel",
        "pilot",
        "tower",
        "radar",
        "wind",
        "ice",
        "boarding",
    ],
    *[
        "cargo",
        "catering",
        "maintenance",
        "schedule",
        "connection",
        "transfer",
        "lost",
        "ticket",
        "upgrade",
    ],
]


def vectors(rows: int, queries: int, noise: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` data and ``queries`` query vectors from one Gaussian mixture, unit length."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(rows // 100, 1), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(n: int) -> np.ndarray:
        picked = centres[rng.integers(0, len(centres), n)]
        points = picked + noise * rng.standard_normal((n, DIM)).astype(np.float32) / np.sqrt(DIM)
        return points / np.linalg.norm(points, axis=1, keepdims=True)

    return draw(rows), draw(queries)


def data_files(rows: int, queries: int, noise: float) -> tuple[Path, Path]:
    folder = DATA_DIR / "vectors"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"x-{rows}-{noise:g}.npy"
    query = folder / f"q-{rows}-{queries}-{noise:g}.npy"
    truth = folder / f"t-{rows}-{queries}-{noise:g}.npy"
    if not (data.exists() and query.exists() and truth.exists()):
        x, q = vectors(rows, queries, noise)
        np.save(data, x)
        np.save(query, q)
        np.save(truth, np.argsort(-(q @ x.T), axis=1)[:, :K])
    return data, query


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.array(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / (len(truth) * K)


def query(table: Any, search: dict[str, Any], vector: np.ndarray) -> np.ndarray:
    """The ids of the top ``K`` rows, as ``lakeforge.vectors`` queries LanceDB."""
    builder = table.search(vector).distance_type("cosine").limit(K).select(["id", "_distance"])
    if "nprobes" in search:
        builder = builder.nprobes(search["nprobes"])
    if "refine_factor" in search:
        builder = builder.refine_factor(search["refine_factor"])
    if "ef" in search:
        builder = builder.ef(search["ef"])
    return builder.to_arrow().column("id").to_numpy()


# -- sides ----------------------------------------------------------------------------


def side_numpy(args: argparse.Namespace) -> None:
    data, query_file = data_files(args.rows, args.queries, args.noise)
    x, q = np.load(data), np.load(query_file)
    truth = np.load(str(query_file).replace("/q-", "/t-"))
    start_mib = rss_mib()
    times, found = [], []
    for vector in q[:5]:
        np.argpartition(-(x @ vector), K)  # warm-up
    for vector in q:
        started = time.perf_counter()
        scores = x @ vector
        top = np.argpartition(-scores, K)[:K]
        top = top[np.argsort(-scores[top])]
        times.append(time.perf_counter() - started)
        found.append(top)
    extra = {"recall": recall(found, truth), **percentiles(times)}
    emit(SideResult("numpy", args.queries, times, peak_rss_mib(), start_mib, extra))


def side_lance(args: argparse.Namespace) -> None:
    import lancedb
    import lancedb.index as li
    import pyarrow as pa

    data, query_file = data_files(args.rows, args.queries, args.noise)
    x, q = np.load(data), np.load(query_file)
    truth = np.load(str(query_file).replace("/q-", "/t-"))
    start_mib = rss_mib()
    folder = Path(tempfile.mkdtemp(prefix="bench-lance-"))
    results: dict[str, Any] = {}
    try:
        db = lancedb.connect(str(folder))
        vector_type = pa.list_(pa.float32(), DIM)
        table_data = pa.table(
            {
                "id": pa.array(np.arange(len(x)), pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM).cast(
                    vector_type
                ),
            }
        )
        built: dict[str, tuple[Any, float]] = {}  # one index per (type, options)
        for name in args.configs:
            kind, index_options, search = CONFIGS[name]
            key = f"{kind}-{sorted(index_options.items())}"
            if key not in built:
                table = db.create_table(f"t{len(built)}", table_data, mode="overwrite")
                started = time.perf_counter()
                if kind != "none":
                    config = getattr(li, kind)(distance_type="cosine", **index_options)
                    table.create_index("vector", config=config)
                built[key] = (table, time.perf_counter() - started)
            table, build_s = built[key]
            for vector in q[:10]:
                query(table, search, vector)  # warm-up: index pages into the cache
            times, found = [], []
            for vector in q:
                started = time.perf_counter()
                found.append(query(table, search, vector))
                times.append(time.perf_counter() - started)
            results[name] = {
                "recall": recall(found, truth),
                "build_s": build_s,
                **percentiles(times),
                "times": times,
            }
            print(
                f"  lance {name:<16} recall@10 {results[name]['recall']:.3f} "
                f"p50 {results[name]['p50_ms']:.2f} ms p99 {results[name]['p99_ms']:.2f} ms "
                f"build {build_s:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best = min(results.values(), key=lambda r: r["p50_ms"])
    for result in results.values():
        del result["times"]
    emit(
        SideResult(
            "lance", args.queries, [best["p50_ms"] / 1000], peak_rss_mib(), start_mib, results
        )
    )


def side_sync(args: argparse.Namespace) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import pyarrow as pa

    import lakeforge
    from lakeforge.vectors import search, sync

    rng = np.random.default_rng(3)
    notes = [" ".join(rng.choice(NOTE_WORDS, 12)) + f" note {i}" for i in range(args.sync_rows)]
    folder = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        project = lakeforge.init_project("benchvec", folder)
        with (project / "lakeforge.yaml").open("a") as handle:
            handle.write(
                "\nvector_indexes:\n  gold.notes_index:\n    source: gold.notes\n"
                "    primary_key: id\n    text_column: text\n"
                "    embedding: {model: all-MiniLM-L6-v2}\n"
            )
        with lakeforge.connect("dev", project_dir=project) as ws:
            ids = list(range(args.sync_rows))
            ws.tables.write("gold.notes", pa.table({"id": ids, "text": notes}))
            search_warm = time.perf_counter()
            from lakeforge.llm._providers import _embedder  # load MiniLM untimed

            _embedder("all-MiniLM-L6-v2")(["warm up"])
            load_s = time.perf_counter() - search_warm
            start_mib = rss_mib()
            first = sync(ws, "gold.notes_index")
            latencies = []
            for rep in range(args.commits):
                marker = f"zebra crossing {rep} at gate {rep * 7}"
                started = time.perf_counter()
                ws.tables.write("gold.notes", pa.table({"id": [10**9 + rep], "text": [marker]}))
                sync(ws, "gold.notes_index")
                found = search(ws, "gold.notes_index", marker, k=1)
                latencies.append(time.perf_counter() - started)
                assert found.column("id").to_pylist() == [10**9 + rep], found
            extra = {
                "rows": args.sync_rows,
                "full_sync_s": first.seconds,
                "rows_per_s": args.sync_rows / first.seconds,
                "model_load_s": load_s,
                "commit_to_searchable_s": latencies,
            }
        emit(SideResult("sync", args.sync_rows, [first.seconds], peak_rss_mib(), start_mib, extra))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- parent ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 vectors, 200 queries")
    parser.add_argument("--rows", type=int, help="vectors (default 100,000; quick 20,000)")
    parser.add_argument("--queries", type=int, help="queries (default 1,000; quick 200)")
    parser.add_argument("--noise", type=float, default=1.0, help="cluster spread (default 1.0)")
    parser.add_argument(
        "--configs", help=f"index configurations (default all: {','.join(CONFIGS)})"
    )
    parser.add_argument("--skip-sync", action="store_true", help="skip the sync measurements")
    parser.add_argument("--sync-rows", type=int, help="rows synced (default 20,000; quick 2,000)")
    parser.add_argument("--commits", type=int, default=5, help="one-row commits timed (default 5)")
    parser.add_argument("--side", choices=["numpy", "lance", "sync"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.rows = args.rows or (20_000 if args.quick else 100_000)
    args.queries = args.queries or (200 if args.quick else 1_000)
    args.sync_rows = args.sync_rows or (2_000 if args.quick else 20_000)
    args.configs = (args.configs or ",".join(CONFIGS)).split(",")
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)} (known: {', '.join(CONFIGS)})")
    if args.side:
        {"numpy": side_numpy, "lance": side_lance, "sync": side_sync}[args.side](args)
        return
    common = [
        "--rows", str(args.rows), "--queries", str(args.queries), "--noise", str(args.noise),
        "--configs", ",".join(args.configs), "--sync-rows", str(args.sync_rows),
        "--commits", str(args.commits),
    ]  # fmt: skip
    data_files(args.rows, args.queries, args.noise)  # built once, outside the timed sides
    floor = run_side(__file__, "numpy", common)
    lance = run_side(__file__, "lance", common)
    report(args, floor, lance, None if args.skip_sync else run_side(__file__, "sync", common))


def report(
    args: argparse.Namespace, floor: SideResult, lance: SideResult, synced: SideResult | None
) -> None:
    print(f"\nVector search: {args.rows:,} x {DIM} clustered vectors (noise {args.noise:g}), "
          f"{args.queries:,} single queries, top {K}")  # fmt: skip
    print(f"{machine()}; {versions('lancedb', 'numpy')}")
    header = f"{'method':<22} {'recall@10':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs numpy p50':>12} {'build s':>8}"
    print(header)
    print("-" * len(header))
    base = floor.extra
    print(f"{'numpy exact':<22} {base['recall']:>9.3f} {base['p50_ms']:>8.2f} {base['p99_ms']:>8.2f} "
          f"{1.0:>12.2f} {'-':>8}")  # fmt: skip
    passing = []
    for name, r in lance.extra.items():
        speed = base["p50_ms"] / r["p50_ms"]
        ok = r["recall"] >= TARGET_RECALL and r["p99_ms"] <= TARGET_P99_MS
        passing += [name] if ok else []
        print(f"{'lance ' + name:<22} {r['recall']:>9.3f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{speed:>11.2f}x {r['build_s']:>8.1f}{'  meets target' if ok else ''}")  # fmt: skip
    print(f"(peak MiB: numpy {floor.peak_mib:.0f}, lance {lance.peak_mib:.0f}; vs numpy p50: "
          "NumPy's median latency over the method's, higher is faster)")  # fmt: skip
    print(f"target recall@10 >= {TARGET_RECALL} at p99 <= {TARGET_P99_MS:g} ms: "
          f"{', '.join(passing) or 'no configuration'} meets it")  # fmt: skip
    if synced is not None:
        s = synced.extra
        waits = ", ".join(f"{t:.2f}" for t in s["commit_to_searchable_s"])
        print(f"\nSync (lakeforge.vectors.sync, all-MiniLM-L6-v2, {s['rows']:,} text rows): "
              f"{s['full_sync_s']:.1f} s, {s['rows_per_s']:,.0f} rows/s (model load "
              f"{s['model_load_s']:.1f} s untimed); peak {synced.peak_mib:.0f} MiB")  # fmt: skip
        print(f"commit -> searchable (one-row commit, incremental sync, search), s: {waits}; "
              f"median {float(np.median(s['commit_to_searchable_s'])):.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
