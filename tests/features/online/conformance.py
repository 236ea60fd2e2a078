"""The conformance suite every :class:`OnlineStore` must pass (cf. sklearn's check_estimator).

``check_online_store(store)`` runs every check in :data:`CHECKS`; each uses its own table
and drops it afterwards, so the store may hold other tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from lakeforge.errors import LakeforgeError, SchemaMismatchError, TableNotFoundError
from lakeforge.features.online import OnlineStore, UnknownFeatureError

T0 = datetime(2024, 1, 1, tzinfo=UTC)
Check = Callable[[OnlineStore, str], None]


def _ts(*hours: int) -> pa.Array:
    return pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("us", tz="UTC"))


def _rows(ids: list[int], hours: list[int], values: list[float | None]) -> pa.Table:
    return pa.table({"id": ids, "ts": _ts(*hours), "x": pa.array(values, pa.float64())})


def _write(store: OnlineStore, table: str, rows: pa.Table) -> int:
    return store.write(table, rows, keys=["id"], timestamp="ts", features=["x"])


def _x(store: OnlineStore, table: str, ids: list[int]) -> list[object]:
    out = store.read(table, pa.table({"id": ids}), keys=["id"])
    return list(out.column("x").to_pylist())


def check_round_trip_types(store: OnlineStore, table: str) -> None:
    rows = pa.table(
        {
            "user": ["a", "b"],
            "region": pa.array([1, 2], pa.int32()),
            "ts": _ts(1, 2),
            "i": pa.array([1, None], pa.int64()),
            "f": [1.5, float("inf")],
            "s": ["héllo", None],
            "b": [True, False],
            "t": pa.array([T0, None], pa.timestamp("ns", tz="UTC")),
            "naive": pa.array([datetime(2024, 5, 6, 7, 8, 9, 123456), None], pa.timestamp("us")),
            "d": pa.array([date(2024, 2, 29), None], pa.date32()),
            "n": pa.array([None, None], pa.null()),
            "l": pa.array([[1, 2], []], pa.list_(pa.int64())),
            "bin": pa.array([b"\x00\xff", None], pa.binary()),
        }
    )
    features = ["i", "f", "s", "b", "t", "naive", "d", "n", "l", "bin"]
    assert store.write(table, rows, keys=["user", "region"], timestamp="ts", features=features)
    keys = pa.table({"user": ["b", "a"], "region": pa.array([2, 1], pa.int32())})
    out = store.read(table, keys, keys=["user", "region"])
    assert out.column_names == ["user", "region", *features]
    expected = rows.select(["user", "region", *features]).take([1, 0])
    assert out.schema == expected.schema
    assert out.equals(expected)
    # Key values in another integer width find the same rows.
    other = pa.table({"region": pa.array([1], pa.int64()), "user": ["a"]})
    assert store.read(table, other, keys=["region", "user"], features=["i"]).column(
        "i"
    ).to_pylist() == [1]


def check_latest_row_kept(store: OnlineStore, table: str) -> None:
    assert _write(store, table, _rows([1, 1, 2], [1, 3, 1], [1.0, 3.0, 10.0])) == 2
    assert _x(store, table, [1, 2]) == [3.0, 10.0]
    assert _write(store, table, _rows([1], [5], [5.0])) == 1
    assert _x(store, table, [1, 2]) == [5.0, 10.0]


def check_late_older_row_ignored(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [5], [5.0]))
    assert _write(store, table, _rows([1, 2], [4, 0], [4.0, 0.0])) == 1
    assert _x(store, table, [1, 2]) == [5.0, 0.0]


def check_ties_later_write_wins(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [5], [5.0]))
    assert _write(store, table, _rows([1], [5], [6.0])) == 1
    assert _x(store, table, [1]) == [6.0]
    _write(store, table, _rows([2, 2], [5, 5], [1.0, 2.0]))  # ties within one call too
    assert _x(store, table, [2]) == [2.0]


def check_no_timestamp_last_write_wins(store: OnlineStore, table: str) -> None:
    rows = pa.table({"id": [1, 1], "x": [1.0, 2.0]})
    assert store.write(table, rows, keys=["id"], timestamp=None, features=["x"]) == 1
    rows = pa.table({"id": [1], "x": [0.5]})
    assert store.write(table, rows, keys=["id"], timestamp=None, features=["x"]) == 1
    assert _x(store, table, [1]) == [0.5]


def check_batch_read_order_and_missing(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1, 2, 3], [1, 1, 1], [1.0, 2.0, None]))
    assert _x(store, table, [3, 99, 1, 2, 1]) == [None, None, 1.0, 2.0, 1.0]
    out = store.read(table, pa.table({"id": pa.array([], pa.int64())}), keys=["id"])
    assert out.num_rows == 0
    assert out.schema.field("x").type == pa.float64()


def check_ttl(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1, 2], [0, 10], [1.0, 2.0]))
    keys = pa.table({"id": [1, 2]})
    now = T0 + timedelta(hours=12)
    out = store.read(table, keys, keys=["id"], ttl=timedelta(hours=5), now=now)
    assert out.column("x").to_pylist() == [None, 2.0]
    out = store.read(table, keys, keys=["id"], ttl=timedelta(hours=12), now=now)
    assert out.column("x").to_pylist() == [1.0, 2.0]
    naive_now = now.replace(tzinfo=None)  # naive datetimes are UTC
    out = store.read(table, keys, keys=["id"], ttl=timedelta(hours=5), now=naive_now)
    assert out.column("x").to_pylist() == [None, 2.0]
    # Without a timestamp column the TTL runs from the write time.
    other = f"{table}_nots"
    store.write(
        other, pa.table({"id": [1], "x": [1.0]}), keys=["id"], timestamp=None, features=["x"]
    )
    try:
        wall = datetime.now(UTC)
        fresh = store.read(other, keys, keys=["id"], ttl=timedelta(hours=1), now=wall)
        assert fresh.column("x").to_pylist() == [1.0, None]
        later = wall + timedelta(hours=2)
        stale = store.read(other, keys, keys=["id"], ttl=timedelta(hours=1), now=later)
        assert stale.column("x").to_pylist() == [None, None]
    finally:
        store.drop(other)


def check_unknown_feature(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [1], [1.0]))
    with pytest.raises(UnknownFeatureError, match="'nope'") as info:
        store.read(table, pa.table({"id": [1]}), keys=["id"], features=["x", "nope"])
    assert "['x']" in str(info.value)


def check_missing_key_column(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [1], [1.0]))
    with pytest.raises(SchemaMismatchError, match="'id'"):
        store.read(table, pa.table({"user": [1]}), keys=["id"])
    with pytest.raises(SchemaMismatchError, match="'id'"):
        store.delete(table, pa.table({"user": [1]}), keys=["id"])
    with pytest.raises(SchemaMismatchError, match="'id'"):
        store.write(
            table, pa.table({"ts": _ts(1), "x": [1.0]}), keys=["id"], timestamp="ts", features=["x"]
        )


def check_write_validation(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [1], [1.0]))
    with pytest.raises(SchemaMismatchError, match="'x'"):
        store.write(
            table,
            pa.table({"id": [1], "ts": _ts(2), "x": ["a"]}),
            keys=["id"],
            timestamp="ts",
            features=["x"],
        )
    with pytest.raises(SchemaMismatchError, match="'id'"):
        _write(store, table, _rows([None], [2], [1.0]))  # type: ignore[list-item]
    with pytest.raises(SchemaMismatchError, match="'y'"):
        store.write(
            table,
            _rows([1], [2], [1.0]).append_column("y", pa.array([1])),
            keys=["id"],
            timestamp="ts",
            features=["x", "y"],
        )
    assert _x(store, table, [1]) == [1.0]


def check_delete(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1, 2, 3], [1, 1, 1], [1.0, 2.0, 3.0]))
    assert store.delete(table, pa.table({"id": [1, 3, 3, 42]}), keys=["id"]) == 2
    assert _x(store, table, [1, 2, 3]) == [None, 2.0, None]
    assert store.delete(table, pa.table({"id": [1]}), keys=["id"]) == 0
    # A deleted key accepts any timestamp again.
    assert _write(store, table, _rows([1], [0], [0.5])) == 1
    assert _x(store, table, [1]) == [0.5]


def check_tables_and_drop(store: OnlineStore, table: str) -> None:
    assert table not in store.tables()
    _write(store, table, _rows([1], [1], [1.0]))
    assert table in store.tables()
    store.drop(table)
    assert table not in store.tables()
    with pytest.raises(TableNotFoundError, match=table):
        _x(store, table, [1])
    _write(store, table, _rows([2], [1], [2.0]))  # recreated empty
    assert _x(store, table, [1, 2]) == [None, 2.0]
    with pytest.raises(LakeforgeError, match="bad:name"):
        _write(store, "bad:name", _rows([1], [1], [1.0]))


CHECKS: dict[str, Check] = {
    f.__name__: f
    for f in (
        check_round_trip_types,
        check_latest_row_kept,
        check_late_older_row_ignored,
        check_ties_later_write_wins,
        check_no_timestamp_last_write_wins,
        check_batch_read_order_and_missing,
        check_ttl,
        check_unknown_feature,
        check_missing_key_column,
        check_write_validation,
        check_delete,
        check_tables_and_drop,
    )
}


def run_check(store: OnlineStore, check: Check) -> None:
    """Run one check on a fresh table, dropping it afterwards."""
    table = f"conf_{uuid.uuid4().hex[:12]}"
    try:
        check(store, table)
    finally:
        if table in store.tables():
            store.drop(table)


def check_online_store(store: OnlineStore) -> None:
    """Run every conformance check against ``store``."""
    for check in CHECKS.values():
        run_check(store, check)
