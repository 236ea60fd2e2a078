"""The Feast half of the feature benchmarks; run it with the Python of a venv holding Feast.

Not imported by Lakeforge: ``features_pit.py`` and ``features_online.py`` start it as
``<feast-python> bench/feast_side.py pit|online ...``. ``pit`` prints one
``BENCH_RESULT <json>`` line (the same protocol as ``_common.py``, which this file does not
import so that it runs in a venv without Lakeforge); ``online`` loads the store, then serves
timed read blocks on stdin/stdout (``_online_worker.py``, standard library only). The FeatureStore is built
programmatically in a temporary repo folder, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _online_worker import done, serve  # bench/ is this script's folder: on sys.path

RESULT_MARK = "BENCH_RESULT "
FEATURES = ["f1", "f2", "f3"]


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def emit(side: str, rows: int, times: list[float], imported: float, **extra: Any) -> None:
    result = {
        "side": side,
        "rows": rows,
        "times": times,
        "peak_mib": peak_rss_mib(),
        "import_mib": imported,
        "extra": extra,
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def make_store(repo: Path, project: str, online: dict[str, Any], source_path: str) -> Any:
    """A FeatureStore with entity ``k`` and feature view ``f`` (f1..f3) over ``source_path``."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.repo_config import RepoConfig
    from feast.types import Float64

    config = RepoConfig(
        project=project,
        registry=str(repo / "registry.db"),
        provider="local",
        online_store=online,
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
        repo_path=str(repo),
    )
    store = FeatureStore(config=config)
    entity = Entity(name="k", join_keys=["k"], value_type=ValueType.INT64)
    source = FileSource(name="f_source", path=source_path, timestamp_field="ts")
    view = FeatureView(
        name="f",
        entities=[entity],
        ttl=timedelta(days=3650),
        schema=[Field(name=f, dtype=Float64) for f in FEATURES],
        source=source,
        online=True,
    )
    store.apply([entity, view])
    return store


def pit(args: argparse.Namespace) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    imported = rss_mib()
    root = Path(args.root)
    repo = Path(tempfile.mkdtemp(prefix="feast_pit_"))
    try:
        store = make_store(
            repo,
            "bench_pit",
            {"type": "sqlite", "path": str(repo / "online.db")},
            str(root / "features.parquet"),
        )
        refs = [f"f:{f}" for f in FEATURES]
        times = []
        out = None
        for _ in range(args.reps):
            start = time.perf_counter()
            entity_df = pd.read_parquet(root / "labels.parquet")
            entity_df = entity_df.rename(columns={"ts": "event_timestamp"})
            out = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
            times.append(time.perf_counter() - start)
        assert out is not None
        pq.write_table(
            __import__("pyarrow").Table.from_pandas(out, preserve_index=False),
            root / "out_feast.parquet",
        )
        emit("feast", len(out), times, imported)
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def online(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    imported = rss_mib()
    root = Path(args.root)
    plan = json.loads((root / "plan.json").read_text())
    data = pq.read_table(root / "online.parquet").to_pandas()
    repo = Path(tempfile.mkdtemp(prefix="feast_online_"))
    if args.store == "sqlite":
        config = {"type": "sqlite", "path": str(repo / "online.db")}
    else:
        config = {"type": "redis", "connection_string": args.redis}
    store = make_store(repo, args.project, config, str(root / "online.parquet"))
    try:
        start = time.perf_counter()
        store.write_to_online_store("f", data)
        load_s = time.perf_counter() - start
        refs = [f"f:{f}" for f in FEATURES]
        singles = [[{"k": int(k)}] for k in plan["single"]]
        batches = [[{"k": int(k)} for k in keys] for keys in plan["batch"]]

        def lookup(rows: list[dict[str, int]]) -> dict[str, Any]:
            return store.get_online_features(features=refs, entity_rows=rows).to_dict()

        for rows in singles[: args.warmup] + batches[: args.warmup]:
            lookup(rows)
        # correctness probe: first batch's values (checked by the parent)
        probe = lookup(batches[0])
        serve(
            {"load_s": load_s, "import_mib": imported, "probe": {f: probe[f] for f in FEATURES}},
            {"single": lambda i: lookup(singles[i]), "batch": lambda i: lookup(batches[i])},
        )
    finally:
        try:
            store.teardown()
        finally:
            shutil.rmtree(repo, ignore_errors=True)
    done(peak_rss_mib())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("pit", help="get_historical_features over the benchmark's Parquet data")
    p.add_argument("--root", required=True)
    p.add_argument("--reps", type=int, default=1)
    o = sub.add_parser(
        "online", help="get_online_features on a sqlite or redis online store (a read worker)"
    )
    o.add_argument("--root", required=True)
    o.add_argument("--store", choices=["sqlite", "redis"], required=True)
    o.add_argument("--redis", default="127.0.0.1:6379")
    o.add_argument("--project", required=True)
    o.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    pit(args) if args.mode == "pit" else online(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
