"""Point-in-time training sets over real Delta feature tables, joined by DuckDB."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from lakeforge import Workspace
from lakeforge.demo import flights_data_dir
from lakeforge.errors import LakeforgeError, SchemaMismatchError
from lakeforge.features._lookups import FeatureFunction, FeatureLookup, register_function
from lakeforge.features._tables import FeatureTables
from lakeforge.features._training import create_training_set

TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
FEATS = pa.schema([("k", pa.string()), ("ts", TS), ("x", pa.int64()), ("y", pa.float64())])
LABELS = pa.schema([("k", pa.string()), ("t", TS), ("label", pa.int64())])


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def feature_table(ws: Workspace, rows: list[tuple[Any, ...]], name: str = "dev.fs.f") -> str:
    data = pa.table(
        {n: list(c) for n, c in zip(FEATS.names, zip(*rows, strict=True), strict=True)}, FEATS
    )
    FeatureTables(ws).create(name, data, primary_keys="k", timestamp_key="ts")
    return name


def labels(rows: list[tuple[Any, ...]]) -> pa.Table:
    return pa.table(
        {n: list(c) for n, c in zip(LABELS.names, zip(*rows, strict=True), strict=True)}, LABELS
    )


def join(ws: Workspace, df: Any, *lookups: Any, **kw: Any) -> list[dict[str, Any]]:
    ts = create_training_set(ws.tables, df, list(lookups), label="label", **kw)
    out = ts.load_df()
    assert isinstance(out, pa.Table)
    return out.to_pylist()


def test_point_in_time_edges(ws: Workspace) -> None:
    name = feature_table(
        ws,
        [("a", h(1), 1, 1.0), ("a", h(3), 3, None), ("a", h(5), 5, 5.0), ("b", h(1), 10, 1.0)],
    )
    df = labels(
        [
            ("a", h(0), 0),  # before any feature row: null
            ("a", h(1), 1),  # equal timestamps: the row at h(1) is included
            ("a", h(2), 2),  # between: the h(1) row, not the future h(3)
            ("a", h(4), 3),  # newest row h(3) has y null: null wins over older 1.0
            ("a", h(9), 4),  # after the last row
            ("c", h(9), 5),  # a key with no history
            (None, h(9), 6),  # a null key
            ("a", None, 7),  # a null timestamp
            ("a", h(2), 8),  # duplicate label rows stay
            ("a", h(2), 8),
        ]
    )
    got = join(ws, df, FeatureLookup(name, "k", timestamp_lookup_key="t"))
    assert [(r["label"], r["x"], r["y"]) for r in got] == [
        (0, None, None),
        (1, 1, 1.0),
        (2, 1, 1.0),
        (3, 3, None),
        (4, 5, 5.0),
        (5, None, None),
        (6, None, None),
        (7, None, None),
        (8, 1, 1.0),
        (8, 1, 1.0),
    ]
    assert [r["t"] for r in got] == df.column("t").to_pylist()


def test_lookback_window_edges_and_defaults(ws: Workspace) -> None:
    name = feature_table(ws, [("a", h(1), 1, 1.0), ("a", h(5), 5, None)])
    df = labels(
        [
            ("a", h(3), 0),  # exactly at the window edge (h(1) == h(3) - 2h): included
            ("a", h(3) + timedelta(microseconds=1), 1),  # one microsecond beyond: excluded
            ("a", h(5), 2),  # in window, but y is null: the default applies
            ("z", h(5), 3),  # no history: defaults
        ]
    )
    lookup = FeatureLookup(
        name,
        ["k"],
        timestamp_lookup_key="t",
        lookback_window=timedelta(hours=2),
        feature_names=["x", "y"],
        rename_outputs={"x": "x_latest"},
        default_values={"y": -1.0},
    )
    got = join(ws, df, lookup)
    assert [(r["x_latest"], r["y"]) for r in got] == [
        (1, 1.0),
        (None, -1.0),
        (5, -1.0),
        (None, -1.0),
    ]
    assert list(got[0]) == ["k", "t", "label", "x_latest", "y"]


def test_equal_feature_timestamps_resolved_deterministically(ws: Workspace) -> None:
    name = feature_table(ws, [("a", h(1), 1, 1.0)])
    # Plain lakehouse appends can create duplicate (key, ts) rows; the largest x wins.
    for x in (7, 3, None):
        ws.tables.write(name, pa.table({"k": ["a"], "ts": [h(1)], "x": [x], "y": [0.5]}, FEATS))
    df = labels([("a", h(2), 0), ("a", h(1), 1)])
    for _ in range(2):
        got = join(ws, df, FeatureLookup(name, "k", timestamp_lookup_key="t"))
        assert [(r["x"], r["y"]) for r in got] == [(7, 0.5), (7, 0.5)]
    # Without a timestamp lookup: the latest row per key, same rule, no duplication.
    got = join(ws, df, FeatureLookup(name, "k"))
    assert [r["x"] for r in got] == [7, 7]


def test_randomised_against_brute_force(ws: Workspace) -> None:
    rng = random.Random(42)
    keys = [f"k{i}" for i in range(15)]
    stamps = {(rng.choice(keys), h(rng.randrange(0, 500) / 4)) for _ in range(2500)}
    feats = [(k, t, rng.randrange(1000), rng.random()) for k, t in sorted(stamps)]
    name = feature_table(ws, feats)
    rows = [(rng.choice([*keys, "none"]), h(rng.randrange(-10, 520) / 4), i) for i in range(3000)]
    window = timedelta(hours=6)
    lookups = [
        FeatureLookup(name, "k", timestamp_lookup_key="t", feature_names=["x"]),
        FeatureLookup(
            name,
            "k",
            timestamp_lookup_key="t",
            lookback_window=window,
            feature_names=["x"],
            rename_outputs={"x": "x6h"},
        ),
    ]
    got = join(ws, labels(rows), *lookups)
    by_key: dict[str, list[tuple[datetime, int]]] = {}
    for k, t, x, _ in feats:
        by_key.setdefault(k, []).append((t, x))
    for (k, t, i), row in zip(rows, got, strict=True):
        past = [(ft, x) for ft, x in by_key.get(k, []) if ft <= t]
        latest = max(past, default=None)
        assert row["label"] == i
        assert row["x"] == (latest[1] if latest else None)
        assert row["x6h"] == (latest[1] if latest and latest[0] >= t - window else None)


def test_flights_with_weather(ws: Workspace, flights: pa.Table) -> None:
    weather = pacsv.read_csv(flights_data_dir() / "weather.csv")
    weather = weather.select(["origin", "time_hour", "temp", "wind_speed", "visib"])
    weather = weather.filter(pc.less(weather.column("time_hour"), h(0).replace(year=2013, day=4)))
    weather = weather.group_by(["origin", "time_hour"]).aggregate(
        [(c, "max") for c in ("temp", "wind_speed", "visib")]
    )
    weather = weather.rename_columns(["origin", "time_hour", "temp", "wind_speed", "visib"])
    # Drop a few hours so that some flights must fall back to an earlier observation.
    weather = weather.filter(pc.not_equal(pc.hour(weather.column("time_hour")), 15))
    ft = FeatureTables(ws)
    ft.create("dev.fs.weather", weather, primary_keys="origin", timestamp_key="time_hour")
    df = flights.select(["origin", "time_hour", "carrier", "dep_delay"])
    ts = create_training_set(
        ws.tables,
        pl.from_arrow(df),
        [
            FeatureLookup(
                "dev.fs.weather",
                "origin",
                timestamp_lookup_key="time_hour",
                lookback_window=timedelta(minutes=30),
                feature_names=["temp", "wind_speed"],
            ),
            FeatureLookup(
                "fs.weather",
                "origin",
                timestamp_lookup_key="time_hour",
                feature_names=["visib"],
                rename_outputs={"visib": "visib_asof"},
            ),
        ],
        label="dep_delay",
        exclude_columns=["carrier"],
    )
    out = ts.load_df("pandas")
    assert len(out) == flights.num_rows
    assert list(out.columns) == ["origin", "time_hour", "dep_delay", "temp", "wind_speed",
                                 "visib_asof"]  # fmt: skip
    # Reference: pandas merge_asof on the same data.
    wdf = weather.to_pandas().sort_values("time_hour")
    ref = df.append_column("row", pa.array(np.arange(df.num_rows))).to_pandas()
    left = ref.sort_values("time_hour")
    asof = pd.merge_asof(left, wdf, on="time_hour", by="origin").sort_values("row")
    recent = pd.merge_asof(
        left, wdf, on="time_hour", by="origin", tolerance=pd.Timedelta(minutes=30)
    ).sort_values("row")
    assert recent["temp"].isna().sum() > ref["time_hour"].dt.hour.eq(15).sum() > 0
    assert out["temp"].isna().tolist() == recent["temp"].isna().tolist()
    assert np.allclose(out["temp"].fillna(-999), recent["temp"].fillna(-999))
    assert np.allclose(out["wind_speed"].fillna(-999), recent["wind_speed"].fillna(-999))
    assert np.allclose(out["visib_asof"].fillna(-1), asof["visib"].fillna(-1))

    # Stream the same set into a Delta table, reporting progress per batch.
    seen: list[tuple[int, int | None]] = []
    result = ts.write_to(
        "dev.gold.training", progress=lambda done, total: seen.append((done, total))
    )
    assert result.rows_written == flights.num_rows
    assert seen and seen[-1] == (flights.num_rows, flights.num_rows)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    written = ws.tables.read("dev.gold.training", format="pandas")
    assert sorted(written.columns) == sorted(out.columns)
    assert written["visib_asof"].sum() == pytest.approx(out["visib_asof"].sum())
    spec = json.loads(json.dumps(ts.feature_spec))
    assert [lk["table_name"] for lk in spec["lookups"]] == ["dev.fs.weather"] * 2
    assert spec["lookups"][0]["lookback_window_seconds"] == 1800
    assert spec["label"] == ["dep_delay"]


def test_two_tables_functions_and_streamed_input(ws: Workspace) -> None:
    name = feature_table(ws, [("a", h(1), 1, 2.0), ("b", h(1), 10, 20.0)])
    FeatureTables(ws).create(
        "dev.fs.profile",
        pa.table({"user": ["a", "b"], "age": [30, 40]}),
        primary_keys="user",
    )

    @register_function("x_times_age")
    def x_times_age(x: Any, age: Any) -> Any:
        return x * age

    df = labels([("b", h(2), 0), ("a", h(2), 1), ("c", h(2), 2)])
    lookups = [
        FeatureLookup(name, "k", timestamp_lookup_key="t", feature_names=["x"]),
        FeatureLookup("dev.fs.profile", "k", default_values={"age": 0}),
        FeatureFunction("x_times_age", {"x": "x", "age": "age"}, "score"),
    ]
    reader = pa.RecordBatchReader.from_batches(df.schema, df.to_batches(max_chunksize=1))
    ts = create_training_set(ws.tables, reader, lookups, label="label", exclude_columns=["x"])
    got = ts.load_df().to_pylist()
    assert [(r["label"], r["age"], r["score"]) for r in got] == [
        (0, 40, 400),
        (1, 30, 30),
        (2, 0, None),
    ]
    with pytest.raises(LakeforgeError, match="stream"):
        ts.load_df()
    assert ts.feature_spec["functions"][0]["output_name"] == "score"


def test_bad_inputs_name_the_column(ws: Workspace) -> None:
    name = feature_table(ws, [("a", h(1), 1, 1.0)])
    FeatureTables(ws).create(
        "dev.fs.plain", pa.table({"user": ["a"], "age": [1]}), primary_keys="user"
    )
    df = labels([("a", h(2), 0)])

    def build(lookup: Any, data: Any = df) -> None:
        create_training_set(ws.tables, data, [lookup], label="label")

    with pytest.raises(SchemaMismatchError, match="lookup key column 'user'"):
        build(FeatureLookup(name, "user", timestamp_lookup_key="t"))
    with pytest.raises(SchemaMismatchError, match="'label' has type int64 but .* 'k' has type"):
        build(FeatureLookup(name, "label", timestamp_lookup_key="t"))
    with pytest.raises(SchemaMismatchError, match="unknown feature 'nope'"):
        build(FeatureLookup(name, "k", timestamp_lookup_key="t", feature_names=["nope"]))
    with pytest.raises(SchemaMismatchError, match="timestamp lookup column 'label' has type"):
        build(FeatureLookup(name, "k", timestamp_lookup_key="label"))
    naive = df.set_column(1, "t", df.column("t").cast(pa.timestamp("us")))
    with pytest.raises(SchemaMismatchError, match="timestamp lookup column 't' has type"):
        build(FeatureLookup(name, "k", timestamp_lookup_key="t"), naive)
    with pytest.raises(SchemaMismatchError, match="timestamp_lookup_key 't' given .* no timestamp"):
        build(FeatureLookup("dev.fs.plain", "k", timestamp_lookup_key="t"))
    with pytest.raises(SchemaMismatchError, match="output column 'label'"):
        build(FeatureLookup(name, "k", rename_outputs={"x": "label"}))
    with pytest.raises(SchemaMismatchError, match="label column 'target'"):
        create_training_set(ws.tables, df, [], label="target")
    with pytest.raises(SchemaMismatchError, match="default value 'high' for feature 'x'"):
        build(FeatureLookup(name, "k", default_values={"x": "high"}))
    with pytest.raises(ValueError, match="lookback_window needs a timestamp_lookup_key"):
        FeatureLookup(name, "k", lookback_window=timedelta(1))
    with pytest.raises(KeyError, match="not registered"):
        create_training_set(ws.tables, df, [FeatureFunction("missing_fn", {}, "o")], label="label")


SEQ_FEATS = pa.schema([*FEATS, ("seq", pa.int64())])


def test_sequence_column_resolves_equal_timestamps(ws: Workspace) -> None:
    name = "dev.fs.seq"
    tables = FeatureTables(ws)

    def table(rows: list[tuple[Any, ...]]) -> pa.Table:
        return pa.Table.from_pylist(
            [dict(zip(SEQ_FEATS.names, (k, h(t), x, None, s), strict=True)) for k, t, x, s in rows],
            SEQ_FEATS,
        )

    tables.create(
        name,
        table([("a", 1, 1, 1), ("a", 2, 2, 0), ("b", 1, 4, 5)]),
        primary_keys="k",
        timestamp_key="ts",
        sequence_by="seq",
    )
    df = labels([("a", h(1.5), 0), ("a", h(3), 1), ("a", h(0.5), 2), ("b", h(2), 3)])
    lookup = FeatureLookup(name, "k", timestamp_lookup_key="t", feature_names=["x"])
    built = create_training_set(ws.tables, df, [lookup], label="label")
    assert built._unique == [True]  # feature-table writes only: no dedupe window needed
    assert [r["x"] for r in built.load_df().to_pylist()] == [1, 2, None, 4]
    # Plain appends repeat (key, ts): the largest seq wins, not the largest values; a
    # null seq counts as the oldest.
    for k, t, x, s in [("a", 1, 9, 0), ("a", 1, 5, 3), ("a", 1, None, 2), ("a", 2, 7, None)]:
        ws.tables.write(name, table([(k, t, x, s)]))
    for _ in range(2):
        got = join(ws, df, lookup)
        assert [r["x"] for r in got] == [5, 2, None, 4]
    got = join(ws, df, FeatureLookup(name, "k", feature_names=["x"]))  # latest row per key
    assert [r["x"] for r in got] == [2, 2, 2, 4]
    with pytest.raises(SchemaMismatchError, match="unknown feature 'seq'"):
        join(ws, df, FeatureLookup(name, "k", feature_names=["seq"]))
