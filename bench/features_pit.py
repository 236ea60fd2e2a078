"""Point-in-time training set: Lakeforge vs a raw DuckDB ASOF join vs Feast.

Usage: ``.venv/bin/python bench/features_pit.py [--quick] [--feast-python PATH]``.

The data is synthetic and seeded (``numpy.random.default_rng(7)``): a feature table
(``k`` int64, ``ts`` timestamps over one year, features ``f1..f3``) and label rows
(``row_id``, ``k``, ``ts``, ``label``). Some keys have only *future* history (all their
feature rows are later than their label rows) and a few label rows are duplicated. It
is written once per size under ``bench/.data/pit_<size>/``: ``features.parquet``,
``labels.parquet`` and a Lakeforge project holding the feature table ``dev.fs.f``.

Sides, each in its own process:

* ``lakeforge``: ``ws.create_training_set(labels, [FeatureLookup("dev.fs.f", "k",
  timestamp_lookup_key="ts")], label="label").load_df()``;
* ``duckdb``: a raw ``ASOF LEFT JOIN`` over the same Delta table's Parquet files;
* ``feast``: ``bench/feast_side.py pit`` run by the Feast venv's Python
  (``get_historical_features(...).to_df()``, file offline store over ``features.parquet``).

Lakeforge and DuckDB must give identical rows. Rows where Feast differs are counted and
classified (label rows Feast drops because the key has only future history, duplicate
label rows Feast collapses, anything else); Feast's behaviour is never copied.
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
    BENCH_DIR,
    DATA_DIR,
    RESULT_MARK,
    SideResult,
    emit,
    machine,
    peak_rss_mib,
    rss_mib,
    run_side,
    time_reps,
    versions,
)

SIZES = {
    # name: (feature rows, keys, label rows)
    "full": (10_000_000, 100_000, 1_000_000),
    "quick": (500_000, 10_000, 100_000),
}
TABLE = "dev.fs.f"
FEATURES = ["f1", "f2", "f3"]
FUTURE_KEY_SHARE = 0.01  # keys whose whole history lies in the last quarter of the year
DUPLICATE_SHARE = 0.001  # label rows that appear twice
YEAR_US = 365 * 86_400 * 1_000_000
START_US = 1_704_067_200 * 1_000_000  # 2024-01-01 UTC
MEMORY_CAP_MIB = 12 * 1024
TARGET_FEAST_SPEEDUP = 30.0
TARGET_DUCKDB_RATIO = 1.5
TARGET_PEAK_MIB = 4 * 1024
DEFAULT_FEAST_PYTHON = BENCH_DIR / ".venv-feast" / "bin" / "python"


# -- data -----------------------------------------------------------------------------


def generate(n_feat: int, n_keys: int, n_labels: int) -> tuple[Any, Any, dict[str, int]]:
    """The feature table and the label rows (seeded), and counts of the planted cases."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(7)
    ts_type = pa.timestamp("us", tz="UTC")
    k = rng.integers(0, n_keys, n_feat, dtype=np.int64)
    ts = START_US + rng.integers(0, YEAR_US, n_feat, dtype=np.int64)
    future_keys = rng.choice(n_keys, int(n_keys * FUTURE_KEY_SHARE), replace=False)
    late = np.isin(k, future_keys)
    ts[late] = START_US + 3 * YEAR_US // 4 + rng.integers(0, YEAR_US // 4, int(late.sum()))
    # one row per (k, ts): the join's answer must not depend on tie-breaking
    _, first = np.unique(k * (2 * YEAR_US) + (ts - START_US), return_index=True)
    first.sort()
    k, ts = k[first], ts[first]
    n = len(k)
    features = pa.table(
        {
            "k": k,
            "ts": pa.array(ts, ts_type),
            "f1": rng.standard_normal(n),
            "f2": rng.random(n) * 100.0,
            "f3": rng.integers(0, 1000, n).astype(np.float64),
        }
    )
    lk = rng.integers(0, n_keys, n_labels, dtype=np.int64)
    lts = START_US + rng.integers(0, YEAR_US, n_labels, dtype=np.int64)
    # label rows of future-only keys fall before their history starts
    fut = np.isin(lk, future_keys)
    lts[fut] = START_US + rng.integers(0, 3 * YEAR_US // 4, int(fut.sum()))
    label = rng.integers(0, 2, n_labels, dtype=np.int64)
    dup = rng.choice(n_labels, max(1, int(n_labels * DUPLICATE_SHARE)), replace=False)
    lk, lts, label = (np.concatenate([a, a[dup]]) for a in (lk, lts, label))
    order = rng.permutation(len(lk))
    labels = pa.table(
        {
            "row_id": np.arange(len(lk), dtype=np.int64),
            "k": lk[order],
            "ts": pa.array(lts[order], ts_type),
            "label": label[order],
        }
    )
    planted = {"future_key_label_rows": int(fut.sum()), "duplicated_label_rows": len(dup)}
    return features, labels, planted


def build(size: str, rebuild: bool) -> Path:
    """``bench/.data/pit_<size>/`` with the Parquet files and the Lakeforge project."""
    import pyarrow.parquet as pq

    import lakeforge

    root = DATA_DIR / f"pit_{size}"
    meta = root / "meta.json"
    if not rebuild and meta.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    start = time.perf_counter()
    features, labels, planted = generate(*SIZES[size])
    pq.write_table(features, root / "features.parquet")
    pq.write_table(labels, root / "labels.parquet")
    print(
        f"generated {features.num_rows:,} feature / {labels.num_rows:,} label rows "
        f"in {time.perf_counter() - start:.1f} s"
    )
    lakeforge.init_project("bench_pit", root)
    start = time.perf_counter()
    with lakeforge.connect("dev", project_dir=root / "bench_pit") as ws:
        ws.features.create(TABLE, features, primary_keys="k", timestamp_key="ts")
        files = [u.removeprefix("file://") for u in ws.tables.delta(TABLE).file_uris()]
    print(f"wrote feature table {TABLE} in {time.perf_counter() - start:.1f} s")
    info = {
        "feature_rows": features.num_rows,
        "label_rows": labels.num_rows,
        "keys": SIZES[size][1],
        "files": files,
        **planted,
    }
    meta.write_text(json.dumps(info, indent=1))
    return root


# -- sides ----------------------------------------------------------------------------


def lakeforge_side(root: Path, reps: int, warmup: int) -> SideResult:
    """``create_training_set(...).load_df()``; labels read from Parquet inside the timer."""
    import pyarrow.parquet as pq

    import lakeforge
    from lakeforge.features import FeatureLookup

    imported = rss_mib()
    lookup = FeatureLookup(TABLE, "k", timestamp_lookup_key="ts", feature_names=FEATURES)
    with lakeforge.connect("dev", project_dir=root / "bench_pit") as ws:

        def run(_: int) -> Any:
            labels = pq.read_table(root / "labels.parquet")
            return ws.create_training_set(labels, [lookup], label="label").load_df(format="arrow")

        times, results = time_reps(run, reps, warmup=warmup)
    out = results[-1]
    pq.write_table(out, root / "out_lakeforge.parquet")
    return SideResult("lakeforge", out.num_rows, times, peak_rss_mib(), imported)


def duckdb_side(root: Path, reps: int, warmup: int) -> SideResult:
    """Raw DuckDB: ``ASOF LEFT JOIN`` of the labels to the Delta table's Parquet files."""
    import duckdb
    import pyarrow.parquet as pq

    imported = rss_mib()
    meta = json.loads((root / "meta.json").read_text())
    labels = str(root / "labels.parquet")
    cols = ", ".join(f"f.{c}" for c in FEATURES)
    query = (
        f"SELECT l.*, {cols} FROM read_parquet({labels!r}) l "
        f"ASOF LEFT JOIN read_parquet({meta['files']!r}) f ON l.k = f.k AND l.ts >= f.ts "
        "ORDER BY l.row_id"
    )

    def run(_: int) -> Any:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute("SET asof_loop_join_threshold = 0")
            return con.sql(query).to_arrow_table()
        finally:
            con.close()

    times, results = time_reps(run, reps, warmup=warmup)
    out = results[-1]
    pq.write_table(out, root / "out_duckdb.parquet")
    return SideResult("duckdb", out.num_rows, times, peak_rss_mib(), imported)


def run_watched(cmd: list[str], cap_mib: float) -> tuple[SideResult | None, str]:
    """Run a side command, killing it (and reporting why) if its RSS passes ``cap_mib``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    killed = ""
    while proc.poll() is None:
        rss = _tree_rss_mib(proc.pid)
        if rss > cap_mib:
            os.killpg(proc.pid, 9)
            killed = f"killed at {rss:,.0f} MiB RSS (cap {cap_mib:,.0f} MiB)"
            break
        time.sleep(0.2)
    proc.wait()
    reader.join()
    results = [ln for ln in lines if ln.startswith(RESULT_MARK)]
    for ln in lines:
        if not ln.startswith(RESULT_MARK):
            print(ln, end="")
    if killed or proc.returncode != 0 or not results:
        return None, killed or f"exit {proc.returncode}"
    return SideResult(**json.loads(results[-1][len(RESULT_MARK) :])), ""


def _tree_rss_mib(pid: int) -> float:
    """Current RSS of ``pid`` and its descendants, in MiB."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


# -- comparing ------------------------------------------------------------------------


def compare(root: Path, meta: dict[str, Any], with_feast: bool) -> dict[str, Any]:
    """Lakeforge vs DuckDB must be identical; Feast's differing rows are classified."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cols = ["row_id", "k", "ts", "label", *FEATURES]
    lf = pq.read_table(root / "out_lakeforge.parquet").select(cols).sort_by("row_id")
    dk = pq.read_table(root / "out_duckdb.parquet").select(cols).sort_by("row_id")
    dk = dk.cast(lf.schema)
    report: dict[str, Any] = {"lakeforge_rows": lf.num_rows, "duckdb_rows": dk.num_rows}
    report["lakeforge_equals_duckdb"] = lf.equals(dk)
    report["label_rows"] = meta["label_rows"]
    report["lakeforge_null_feature_rows"] = lf.column("f1").null_count
    if not with_feast:
        return report

    fe = pq.read_table(root / "out_feast.parquet")
    fe = fe.rename_columns(["ts" if c == "event_timestamp" else c for c in fe.column_names])
    fe = fe.select(cols).cast(lf.schema).sort_by("row_id")
    report["feast_rows"] = fe.num_rows
    # label rows missing from Feast's output, classified
    present = pc.is_in(lf.column("row_id"), value_set=fe.column("row_id"))
    missing = lf.filter(pc.invert(present))
    first_ts = (
        pq.read_table(root / "features.parquet", columns=["k", "ts"])
        .group_by("k")
        .aggregate([("ts", "min")])
    )
    first = dict(
        zip(
            first_ts.column("k").to_numpy(),
            first_ts.column("ts_min").cast(pa.int64()).to_numpy(),
            strict=True,
        )
    )
    # (k, ts) pairs that occur more than once among the labels, and which of them Feast kept
    lab = lf.select(["k", "ts"])
    pairs = lab.group_by(["k", "ts"]).aggregate([("k", "count")])
    dup_pairs = {
        (k, t)
        for k, t, c in zip(
            pairs.column("k").to_numpy(),
            pairs.column("ts").cast(pa.int64()).to_numpy(),
            pairs.column("k_count").to_numpy(),
            strict=True,
        )
        if c > 1
    }
    kept_pairs = set(
        zip(fe.column("k").to_numpy(), fe.column("ts").cast(pa.int64()).to_numpy(), strict=True)
    )
    future_only = collapsed = other_missing = 0
    for k, t, f1_null in zip(
        missing.column("k").to_numpy(),
        missing.column("ts").cast(pa.int64()).to_numpy(),
        missing.column("f1").is_null().to_numpy(zero_copy_only=False),
        strict=True,
    ):
        if f1_null and (k not in first or first[k] > t):
            future_only += 1
        elif (k, t) in dup_pairs and (k, t) in kept_pairs:
            collapsed += 1
        else:
            other_missing += 1
    # rows in both: values must match
    both = lf.filter(present)
    fe_in = fe.filter(pc.is_in(fe.column("row_id"), value_set=both.column("row_id")))
    value_diff = 0
    if fe_in.num_rows == both.num_rows:
        diff = np.zeros(both.num_rows, dtype=bool)
        for c in ["k", "ts", "label", *FEATURES]:
            a, b = both.column(c), fe_in.column(c)
            eq = pc.fill_null(pc.equal(a, b), False)
            both_null = pc.and_(pc.is_null(a), pc.is_null(b))
            diff |= ~pc.or_(eq, both_null).to_numpy(zero_copy_only=False)
        value_diff = int(diff.sum())
    extra = fe.num_rows - fe_in.num_rows
    report.update(
        feast_missing_rows=missing.num_rows,
        feast_dropped_future_only_key=future_only,
        feast_collapsed_duplicates=collapsed,
        feast_missing_other=other_missing,
        feast_value_differences=value_diff,
        feast_extra_rows=extra + (both.num_rows - fe_in.num_rows if extra == 0 else 0),
    )
    return report


# -- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="500k feature rows, 10k keys, 100k labels"
    )
    parser.add_argument("--reps", type=int, help="timed runs per side (default 3; quick 3)")
    parser.add_argument("--feast-reps", type=int, default=1, help="timed Feast runs (default 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument(
        "--feast-python",
        default=str(DEFAULT_FEAST_PYTHON),
        help="Python of a venv with Feast (default bench/.venv-feast/bin/python)",
    )
    parser.add_argument(
        "--feast",
        choices=["auto", "on", "off"],
        default="auto",
        help="run the Feast side (auto: on in --quick, off at full size, see README)",
    )
    parser.add_argument("--rebuild", action="store_true", help="generate the data again")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--side", choices=["lakeforge", "duckdb"], help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    reps = args.reps or 3

    if args.side:
        side = lakeforge_side if args.side == "lakeforge" else duckdb_side
        emit(side(args.root, reps, args.warmup))
        return

    size = "quick" if args.quick else "full"
    n_feat, n_keys, n_labels = SIZES[size]
    print(
        f"features_pit benchmark ({size}): {n_feat:,} feature rows, {n_keys:,} keys, "
        f"{n_labels:,} label rows; best of {reps} after {args.warmup} warm-up; {machine()}"
    )
    print(versions("pyarrow", "deltalake", "duckdb"))
    root = build(size, args.rebuild)
    meta = json.loads((root / "meta.json").read_text())
    print(
        f"data: {meta['feature_rows']:,} feature rows (unique k, ts), {meta['label_rows']:,} "
        f"label rows ({meta['future_key_label_rows']:,} of future-only keys, "
        f"{meta['duplicated_label_rows']:,} duplicated), under {root}"
    )
    common = ["--root", str(root), "--reps", str(reps), "--warmup", str(args.warmup)]
    for name in ("out_lakeforge.parquet", "out_duckdb.parquet", "out_feast.parquet"):
        (root / name).unlink(missing_ok=True)
    duck = run_side(__file__, "duckdb", common)
    lf = run_side(__file__, "lakeforge", common)

    with_feast = args.feast == "on" or (args.feast == "auto" and args.quick)
    feast: SideResult | None = None
    feast_note = "not run (full size: Feast needs ~17 GB here; use --feast on to try)"
    if with_feast:
        if not Path(args.feast_python).exists():
            feast_note = f"not run: no Python at {args.feast_python} (see --feast-python)"
        else:
            cmd = [
                args.feast_python,
                str(BENCH_DIR / "feast_side.py"),
                "pit",
                "--root",
                str(root),
                "--reps",
                str(args.feast_reps),
            ]
            feast, why = run_watched(cmd, MEMORY_CAP_MIB)
            if feast is None:
                feast_note = f"failed: {why}"
    report = compare(root, meta, feast is not None)

    print(f"\nPoint-in-time training set, {n_labels:,}+ labels x {n_feat:,} feature rows")
    header = f"{'side':<10} {'best s':>8} {'all runs (s)':<26} {'rows out':>10} {'peak MiB':>9} {'import MiB':>10}"
    print(header)
    print("-" * len(header))
    for res in (lf, duck, feast):
        if res is None:
            continue
        runs = ", ".join(f"{t:.2f}" for t in res.times)
        print(
            f"{res.side:<10} {res.best:>8.3f} {runs:<26} {res.rows:>10,} "
            f"{res.peak_mib:>9.0f} {res.import_mib:>10.0f}"
        )
    if feast is None:
        print(f"feast      {feast_note}")

    print("\nrows:")
    same = report["lakeforge_equals_duckdb"]
    print(
        f"  lakeforge vs duckdb: {report['lakeforge_rows']:,} vs {report['duckdb_rows']:,} rows, "
        f"{'IDENTICAL' if same else 'DIFFERENT'} (sorted by row_id); "
        f"{report['lakeforge_null_feature_rows']:,} label rows have no feature row at or before them"
    )
    if feast is not None:
        print(
            f"  feast: {report['feast_rows']:,} rows; {report['feast_missing_rows']:,} label rows "
            f"missing from Feast's output:"
        )
        print(
            f"    {report['feast_dropped_future_only_key']:,} dropped: key has only future "
            "history (Lakeforge keeps them with null features)"
        )
        print(
            f"    {report['feast_collapsed_duplicates']:,} collapsed: duplicate (k, ts) label rows "
            "kept once (Lakeforge keeps every label row)"
        )
        print(f"    {report['feast_missing_other']:,} other")
        print(
            f"  rows in both with different values: {report['feast_value_differences']:,}; "
            f"extra rows in Feast: {report['feast_extra_rows']:,}"
        )

    ratio_duck = lf.best / duck.best
    checks = [
        (
            f"lakeforge/duckdb time = {ratio_duck:.2f}x (target <= {TARGET_DUCKDB_RATIO}x)",
            ratio_duck <= TARGET_DUCKDB_RATIO,
        ),
        (
            f"lakeforge peak RSS = {lf.peak_mib:,.0f} MiB (target <= {TARGET_PEAK_MIB:,} MiB)",
            lf.peak_mib <= TARGET_PEAK_MIB,
        ),
        ("lakeforge rows identical to duckdb", bool(same)),
    ]
    if feast is not None:
        speedup = feast.best / lf.best
        checks.append(
            (
                f"feast/lakeforge time = {speedup:.1f}x faster (target >= {TARGET_FEAST_SPEEDUP:.0f}x)",
                speedup >= TARGET_FEAST_SPEEDUP,
            )
        )
        other = report["feast_missing_other"] + report["feast_value_differences"]
        other += report["feast_extra_rows"]
        checks.append(("rows differ from Feast only where its semantics differ", other == 0))
    print()
    for text, ok in checks:
        print(f"{text}: {'PASS' if ok else 'FAIL'}")
    all_ok = all(ok for _, ok in checks)
    sys.exit(1 if args.strict and not all_ok else 0)


if __name__ == "__main__":
    main()
