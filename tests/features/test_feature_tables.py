"""Feature tables on real Delta tables: create, upsert with new features, describe, list."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pytest

from lakeforge import Workspace
from lakeforge.errors import LakeforgeError, SchemaMismatchError
from lakeforge.features._tables import FeatureTables

TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema([("user", pa.string()), ("ts", TS), ("clicks", pa.int64())])


def at(hour: int) -> datetime:
    return datetime(2024, 1, 1, hour, tzinfo=UTC)


def test_create_describe_list(ws: Workspace) -> None:
    ft = FeatureTables(ws)
    info = ft.create(
        "dev.features.user_clicks",
        SCHEMA,
        primary_keys="user",
        timestamp_key="ts",
        description="clicks per user",
        feature_descriptions={"clicks": "clicks in the last hour"},
    )
    assert info.primary_keys == ["user", "ts"]
    assert info.lookup_keys == ["user"]
    assert info.timestamp_key == "ts"
    assert info.features == {"clicks": "clicks in the last hour"}
    assert info.description == "clicks per user"
    # A plain lakehouse table is not a feature table.
    ws.tables.write("dev.features.plain", pa.table({"a": [1]}))
    ft.create("dev.features.users", pa.schema([("user", pa.string()), ("age", pa.int32())]),
              primary_keys=["user"])  # fmt: skip
    assert [str(t) for t in ft.list()] == ["dev.features.user_clicks", "dev.features.users"]
    assert ft.describe("dev.features.users").timestamp_key is None
    assert ws.tables.describe("dev.features.user_clicks").primary_keys == ["user", "ts"]
    with pytest.raises(LakeforgeError, match="not a feature table"):
        ft.describe("dev.features.plain")


def test_write_upserts_and_evolves_schema(ws: Workspace) -> None:
    ft = FeatureTables(ws)
    name = "dev.features.user_clicks"
    ft.create(name, SCHEMA, primary_keys=["user"], timestamp_key="ts")
    ft.write(name, pa.table({"user": ["a", "a", "b"], "ts": [at(1), at(2), at(1)],
                             "clicks": [1, 2, 3]}, SCHEMA))  # fmt: skip
    # Same (user, ts) updates; a new ts is a new row; a new column becomes a feature.
    ft.write(
        name,
        pa.table(
            {"user": ["a", "c"], "ts": [at(2), at(5)], "clicks": [20, 7], "views": [9.5, 1.0]},
            pa.schema([*SCHEMA, ("views", pa.float64())]),
        ),
    )
    rows = ws.tables.read(name).sort_by([("user", "ascending"), ("ts", "ascending")]).to_pylist()
    assert [(r["user"], r["ts"].hour, r["clicks"], r["views"]) for r in rows] == [
        ("a", 1, 1, None),
        ("a", 2, 20, 9.5),
        ("b", 1, 3, None),
        ("c", 5, 7, 1.0),
    ]
    info = ft.describe(name)
    assert list(info.features) == ["clicks", "views"]
    assert info.timestamp_key == "ts" and info.primary_keys == ["user", "ts"]
    assert [str(t) for t in ft.list()] == [name]
    with pytest.raises(SchemaMismatchError, match="'ts' is missing"):
        ft.write(name, pa.table({"user": ["a"], "clicks": [1]}))
    with pytest.raises(SchemaMismatchError, match="more than once"):
        ft.write(name, pa.table({"user": ["a", "a"], "ts": [at(1), at(1)], "clicks": [1, 2]}))


def test_create_from_dataframe(ws: Workspace) -> None:
    ft = FeatureTables(ws)
    df = pa.table({"user": ["a", "b"], "ts": [at(1), at(2)], "clicks": [1, 2]}, SCHEMA)
    # Polars (pandas with tz-aware timestamps trips a pandas 3.1 deprecation inside pyarrow).
    info = ft.create("dev.features.uc", pl.from_arrow(df), primary_keys="user", timestamp_key="ts")
    assert info.primary_keys == ["user", "ts"]
    assert ws.tables.read("dev.features.uc").num_rows == 2


def test_create_errors_name_the_column(ws: Workspace) -> None:
    ft = FeatureTables(ws)
    with pytest.raises(SchemaMismatchError, match="'when' is not in the schema"):
        ft.create("dev.features.x", SCHEMA, primary_keys="user", timestamp_key="when")
    with pytest.raises(SchemaMismatchError, match="timestamp key 'clicks' has type int64"):
        ft.create("dev.features.x", SCHEMA, primary_keys="user", timestamp_key="clicks")
    with pytest.raises(SchemaMismatchError, match="'account' is not in the schema"):
        ft.create("dev.features.x", SCHEMA, primary_keys=["account"], timestamp_key="ts")
    with pytest.raises(SchemaMismatchError, match="'nope' is not in the schema"):
        ft.create("dev.features.x", SCHEMA, primary_keys="user", feature_descriptions={"nope": "x"})
    assert not ws.tables.exists("dev.features.x")


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ({"user": ["a", "a"], "ts": [at(1), at(1)], "clicks": [1, 2]}, "more than once"),
        ({"user": ["a", None], "ts": [at(1), at(1)], "clicks": [1, 2]}, "key column 'user'"),
    ],
)
def test_refused_create_leaves_nothing(ws: Workspace, rows: dict, error: str) -> None:
    ft = FeatureTables(ws)
    name = "dev.features.uc"
    with pytest.raises(SchemaMismatchError, match=error):
        ft.create(name, pa.table(rows, SCHEMA), primary_keys="user", timestamp_key="ts")
    assert not ws.tables.exists(name)
    fixed = pa.table({"user": ["a", "b"], "ts": [at(1), at(1)], "clicks": [1, 2]}, SCHEMA)
    assert ft.create(name, fixed, primary_keys="user", timestamp_key="ts").version == 1
    assert ws.tables.read(name).num_rows == 2


SEQ_SCHEMA = pa.schema([*SCHEMA, ("ingested_at", TS)])


def seq_rows(*rows: tuple[str, int, int, int]) -> pa.Table:
    """(user, ts hour, clicks, ingested_at hour) rows."""
    return pa.Table.from_pylist(
        [{"user": u, "ts": at(t), "clicks": c, "ingested_at": at(s)} for u, t, c, s in rows],
        SEQ_SCHEMA,
    )


def clicks(ws: Workspace, name: str) -> list[tuple[str, int, int, int]]:
    rows = ws.tables.read(name).sort_by([("user", "ascending"), ("ts", "ascending")]).to_pylist()
    return [(r["user"], r["ts"].hour, r["clicks"], r["ingested_at"].hour) for r in rows]


def test_sequence_column_keeps_the_latest_created_row(ws: Workspace) -> None:
    ft = FeatureTables(ws)
    name = "dev.features.uc"
    # One write with duplicates, in no particular order: the largest ingested_at wins.
    info = ft.create(
        name,
        seq_rows(("a", 1, 10, 5), ("a", 1, 30, 7), ("a", 1, 20, 6), ("b", 1, 1, 1)),
        primary_keys="user",
        timestamp_key="ts",
        sequence_by="ingested_at",
    )
    assert info.sequence_by == "ingested_at"
    assert list(info.features) == ["clicks"]  # the sequence column is not a feature
    assert info.primary_keys == ["user", "ts"]
    assert clicks(ws, name) == [("a", 1, 30, 7), ("b", 1, 1, 1)]
    # Later writes: an older-sequence row never replaces a newer one, a newer one does,
    # duplicates inside the write are resolved the same way.
    ft.write(name, seq_rows(("a", 1, 99, 6), ("b", 1, 2, 3), ("b", 1, 5, 2), ("c", 2, 4, 0)))
    assert clicks(ws, name) == [("a", 1, 30, 7), ("b", 1, 2, 3), ("c", 2, 4, 0)]
    ft.write(name, seq_rows(("a", 1, 31, 8)))
    assert clicks(ws, name) == [("a", 1, 31, 8), ("b", 1, 2, 3), ("c", 2, 4, 0)]
    assert ft.describe(name).sequence_by == "ingested_at"  # kept in the table's metadata
    assert ft.create("dev.features.plain", SCHEMA, primary_keys="user").sequence_by is None


def test_sequence_column_errors_name_the_column(ws: Workspace) -> None:
    ft = FeatureTables(ws)
    name = "dev.features.uc"
    with pytest.raises(SchemaMismatchError, match="sequence column 'ingested' is not in"):
        ft.create(name, SEQ_SCHEMA, primary_keys="user", timestamp_key="ts", sequence_by="ingested")
    tags = pa.schema([*SCHEMA, ("tags", pa.list_(pa.string()))])
    with pytest.raises(SchemaMismatchError, match=r"column 'tags' has type list.*allowed: integer"):
        ft.create(name, tags, primary_keys="user", sequence_by="tags")
    with pytest.raises(SchemaMismatchError, match="sequence column 'ts' is a key column"):
        ft.create(name, SEQ_SCHEMA, primary_keys="user", timestamp_key="ts", sequence_by="ts")
    assert not ws.tables.exists(name)
    ft.create(name, SEQ_SCHEMA, primary_keys="user", timestamp_key="ts", sequence_by="ingested_at")
    with pytest.raises(SchemaMismatchError, match="sequence column 'ingested_at' is missing"):
        ft.write(name, pa.table({"user": ["a"], "ts": [at(1)], "clicks": [1]}))
    with pytest.raises(SchemaMismatchError, match="sequence column 'ingested_at' has 1 null"):
        ft.write(name, pa.table({"user": ["a"], "ts": [at(1)], "clicks": [1],
                                 "ingested_at": pa.array([None], TS)}))  # fmt: skip
    with pytest.raises(SchemaMismatchError, match="same sequence value"):
        ft.write(name, seq_rows(("a", 1, 1, 2), ("a", 1, 2, 2)))
    assert ws.tables.read(name).num_rows == 0
