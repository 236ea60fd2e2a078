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
