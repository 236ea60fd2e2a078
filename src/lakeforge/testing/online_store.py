"""The conformance suite every :class:`~lakeforge.features.online.OnlineStore` must pass.

Shaped like scikit-learn's ``check_estimator``: :func:`check_online_store` runs every
check, :func:`online_store_checks` yields ``(name, check)`` pairs and
:func:`parametrize_online_store_checks` turns them into a ``pytest.mark.parametrize``.
A check takes a *factory*: a callable that opens a new store (a new connection) on one
backend and namespace each time it is called. Each check writes only tables it names
itself (``conf_<random>``), drops them and closes the stores it opened, so the backend
may hold other tables.

Checks that need more than the core contract say so; a store declares what it supports
with :class:`OnlineStoreCapabilities`, and the checks it does not support are not run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from lakeforge.errors import LakeforgeError, SchemaMismatchError, TableNotFoundError
from lakeforge.features.online import OnlineStore, UnknownFeatureError
from lakeforge.testing._support import race

__all__ = [
    "OnlineStoreCapabilities",
    "OnlineStoreCheck",
    "StoreFactory",
    "check_online_store",
    "online_store_checks",
    "parametrize_online_store_checks",
]

#: Opens a new store on the backend under test: same backend, same namespace, each time.
StoreFactory = Callable[[], OnlineStore]
#: One conformance check: raises (an ``AssertionError`` mostly) when the store fails it.
OnlineStoreCheck = Callable[[StoreFactory], None]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class OnlineStoreCapabilities:
    """What a store supports beyond the core contract (every check of which always runs).

    ``shared``: stores opened by one factory share their data, like connections to one
    database: one sees another's writes and drops at once, and writers through several
    of them at the same time still keep the newest row per key. True for SQLite files
    and Redis; False for, e.g., a store that keeps its rows in its own process memory.
    """

    shared: bool = True


# -- helpers --------------------------------------------------------------------------------


def _ts(*hours: int) -> pa.Array:
    return pa.array([T0 + timedelta(hours=h) for h in hours], pa.timestamp("us", tz="UTC"))


def _rows(ids: list[int], hours: list[int], values: list[float | None]) -> pa.Table:
    return pa.table({"id": ids, "ts": _ts(*hours), "x": pa.array(values, pa.float64())})


def _write(store: OnlineStore, table: str, rows: pa.Table) -> int:
    return store.write(table, rows, keys=["id"], timestamp="ts", features=["x"])


def _x(store: OnlineStore, table: str, ids: list[int]) -> list[object]:
    out = store.read(table, pa.table({"id": ids}), keys=["id"])
    return list(out.column("x").to_pylist())


def _new_table() -> str:
    return f"conf_{uuid.uuid4().hex[:12]}"


def _drop_if_there(store: OnlineStore, *tables: str) -> None:
    for table in tables:
        if table in store.tables():
            store.drop(table)


# -- checks on one store and one fresh table ------------------------------------------------


def _round_trip_types(store: OnlineStore, table: str) -> None:
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
    found = store.read(table, other, keys=["region", "user"], features=["i"])
    assert found.column("i").to_pylist() == [1]


def _lookup_matches_read(store: OnlineStore, table: str) -> None:
    """``lookup`` (Python rows) returns what ``read`` (Arrow) does, as Python values."""
    rows = pa.table(
        {
            "user": ["a", "b", "c"],
            "day": pa.array([date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 1)], pa.date32()),
            "ts": _ts(1, 2, 3),
            "f": pa.array([None, 2.5, -2.0], pa.float64()),
            "t": pa.array([T0, None, T0], pa.timestamp("ms", tz="UTC")),
            "bin": pa.array([b"\x00", b"", None], pa.binary()),
            "l": pa.array([[1], [], None], pa.list_(pa.int64())),
        }
    )
    features = ["f", "t", "bin", "l"]
    store.write(table, rows, keys=["user", "day"], timestamp="ts", features=features)
    wanted = [
        {"user": "c", "day": date(2024, 1, 1)},
        {"user": "a", "day": date(2024, 1, 2)},  # missing
        {"day": date(2024, 1, 2), "user": "b", "other": 1},  # any order, extra entries
    ]
    keys = pa.table(
        {"user": [r["user"] for r in wanted], "day": pa.array([r["day"] for r in wanted])}
    )
    expected = store.read(table, keys, keys=["user", "day"]).to_pylist()
    assert store.lookup(table, wanted) == expected
    assert store.lookup(table, wanted[:1], features=["l"]) == [
        {"user": "c", "day": date(2024, 1, 1), "l": None}
    ]
    assert store.lookup(table, []) == []
    with pytest.raises(SchemaMismatchError, match="'day'"):
        store.lookup(table, [{"user": "a"}])
    with pytest.raises(SchemaMismatchError, match="'user'"):
        store.lookup(table, [{"user": 1, "day": date(2024, 1, 1)}])
    with pytest.raises(UnknownFeatureError, match="'nope'"):
        store.lookup(table, wanted, features=["nope"])
    late = T0 + timedelta(hours=4)
    assert [r["f"] for r in store.lookup(table, wanted, features=["f"])] == [-2.0, None, 2.5]
    fresh = store.lookup(table, wanted, features=["f"], ttl=timedelta(minutes=90), now=late)
    assert [r["f"] for r in fresh] == [-2.0, None, None]  # b's row, 2 h old, expired


def _latest_row_kept(store: OnlineStore, table: str) -> None:
    assert _write(store, table, _rows([1, 1, 2], [1, 3, 1], [1.0, 3.0, 10.0])) == 2
    assert _x(store, table, [1, 2]) == [3.0, 10.0]
    assert _write(store, table, _rows([1], [5], [5.0])) == 1
    assert _x(store, table, [1, 2]) == [5.0, 10.0]


def _late_older_row_ignored(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [5], [5.0]))
    assert _write(store, table, _rows([1, 2], [4, 0], [4.0, 0.0])) == 1
    assert _x(store, table, [1, 2]) == [5.0, 0.0]


def _ties_later_write_wins(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [5], [5.0]))
    assert _write(store, table, _rows([1], [5], [6.0])) == 1
    assert _x(store, table, [1]) == [6.0]
    _write(store, table, _rows([2, 2], [5, 5], [1.0, 2.0]))  # ties within one call too
    assert _x(store, table, [2]) == [2.0]


def _no_timestamp_last_write_wins(store: OnlineStore, table: str) -> None:
    rows = pa.table({"id": [1, 1], "x": [1.0, 2.0]})
    assert store.write(table, rows, keys=["id"], timestamp=None, features=["x"]) == 1
    rows = pa.table({"id": [1], "x": [0.5]})
    assert store.write(table, rows, keys=["id"], timestamp=None, features=["x"]) == 1
    assert _x(store, table, [1]) == [0.5]


def _batch_read_order_and_missing(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1, 2, 3], [1, 1, 1], [1.0, 2.0, None]))
    assert _x(store, table, [3, 99, 1, 2, 1]) == [None, None, 1.0, 2.0, 1.0]
    out = store.read(table, pa.table({"id": pa.array([], pa.int64())}), keys=["id"])
    assert out.num_rows == 0
    assert out.schema.field("x").type == pa.float64()


def _batch_read_of_1000_keys(store: OnlineStore, table: str) -> None:
    n = 1_000
    rows = pa.table(
        {
            "id": [f"user-{i}" for i in range(n)],
            "ts": pa.array([T0] * n),
            "score": [i / 2 for i in range(n)],
        }
    )
    assert store.write(table, rows, keys=["id"], timestamp="ts", features=["score"]) == n
    wanted = [f"user-{i}" for i in range(n + 200)][::-1]  # 200 missing, reversed order
    out = store.read(table, pa.table({"id": wanted}), keys=["id"])
    assert out.num_rows == len(wanted)
    assert out.column("id").to_pylist() == wanted
    assert out.column("score").to_pylist() == [None] * 200 + [i / 2 for i in range(n)][::-1]


def _ttl(store: OnlineStore, table: str) -> None:
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
        _drop_if_there(store, other)


def _unknown_feature(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [1], [1.0]))
    with pytest.raises(UnknownFeatureError, match="'nope'") as info:
        store.read(table, pa.table({"id": [1]}), keys=["id"], features=["x", "nope"])
    assert "['x']" in str(info.value)


def _missing_key_column(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1], [1], [1.0]))
    with pytest.raises(SchemaMismatchError, match="'id'"):
        store.read(table, pa.table({"user": [1]}), keys=["id"])
    with pytest.raises(SchemaMismatchError, match="'id'"):
        store.delete(table, pa.table({"user": [1]}), keys=["id"])
    with pytest.raises(SchemaMismatchError, match="'id'"):
        store.write(
            table, pa.table({"ts": _ts(1), "x": [1.0]}), keys=["id"], timestamp="ts", features=["x"]
        )


def _write_validation(store: OnlineStore, table: str) -> None:
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
        _write(
            store, table, pa.table({"id": pa.array([None], pa.int64()), "ts": _ts(2), "x": [1.0]})
        )
    with pytest.raises(SchemaMismatchError, match="'y'"):
        store.write(
            table,
            _rows([1], [2], [1.0]).append_column("y", pa.array([1])),
            keys=["id"],
            timestamp="ts",
            features=["x", "y"],
        )
    assert _x(store, table, [1]) == [1.0]


def _delete(store: OnlineStore, table: str) -> None:
    _write(store, table, _rows([1, 2, 3], [1, 1, 1], [1.0, 2.0, 3.0]))
    assert store.delete(table, pa.table({"id": [1, 3, 3, 42]}), keys=["id"]) == 2
    assert _x(store, table, [1, 2, 3]) == [None, 2.0, None]
    assert store.delete(table, pa.table({"id": [1]}), keys=["id"]) == 0
    # A deleted key accepts any timestamp again.
    assert _write(store, table, _rows([1], [0], [0.5])) == 1
    assert _x(store, table, [1]) == [0.5]


def _tables_and_drop(store: OnlineStore, table: str) -> None:
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


# -- checks on several stores of one factory (capability ``shared``) ------------------------


def _concurrent_interleaved_writes_keep_newest(factory: StoreFactory, table: str) -> None:
    ids = list(range(20))
    n_threads, n_versions = 4, 15

    def writer(worker: int) -> None:
        # Each thread writes its own versions, newest and oldest interleaved.
        versions = [v for v in range(n_versions) if v % n_threads == worker]
        order = [x for pair in zip(versions[::-1], versions, strict=True) for x in pair]
        with factory() as store:  # one connection per thread, as processes would have
            for v in order:
                rows = pa.table(
                    {
                        "id": ids,
                        "ts": pa.array([T0 + timedelta(minutes=v)] * len(ids)),
                        "version": [v] * len(ids),
                    }
                )
                store.write(table, rows, keys=["id"], timestamp="ts", features=["version"])

    race(writer, n_threads)
    with factory() as reader:
        out = reader.read(table, pa.table({"id": ids}), keys=["id"])
    assert out.column("version").to_pylist() == [n_versions - 1] * len(ids)


def _reader_sees_table_recreated_elsewhere(factory: StoreFactory, table: str) -> None:
    """Stores may cache table specs; a reader must still see a drop and a new schema."""
    with factory() as reader, factory() as writer:
        keys = pa.table({"k": pa.array([1], pa.int64())})
        rows = pa.table({"k": [1], "x": [1.5]})
        writer.write(table, rows, keys=["k"], timestamp=None, features=["x"])
        assert reader.read(table, keys, keys=["k"]).column("x").to_pylist() == [1.5]
        writer.drop(table)
        with pytest.raises(TableNotFoundError):
            reader.read(table, keys, keys=["k"])
        rows = pa.table({"k": [1], "y": ["a"]})
        writer.write(table, rows, keys=["k"], timestamp=None, features=["y"])
        assert reader.read(table, keys, keys=["k"]).column("y").to_pylist() == ["a"]
        with pytest.raises(UnknownFeatureError):
            reader.read(table, keys, keys=["k"], features=["x"])


# -- the suite ------------------------------------------------------------------------------


def _on_one_store(body: Callable[[OnlineStore, str], None]) -> OnlineStoreCheck:
    def check(factory: StoreFactory) -> None:
        table = _new_table()
        with factory() as store:
            try:
                body(store, table)
            finally:
                _drop_if_there(store, table)

    return check


def _on_the_factory(body: Callable[[StoreFactory, str], None]) -> OnlineStoreCheck:
    def check(factory: StoreFactory) -> None:
        table = _new_table()
        try:
            body(factory, table)
        finally:
            with factory() as store:
                _drop_if_there(store, table)

    return check


@dataclass(frozen=True)
class _Check:
    name: str
    run: OnlineStoreCheck
    needs: tuple[str, ...] = ()  # OnlineStoreCapabilities fields that must be True


_CHECKS = (
    _Check("check_round_trip_types", _on_one_store(_round_trip_types)),
    _Check("check_latest_row_kept", _on_one_store(_latest_row_kept)),
    _Check("check_late_older_row_ignored", _on_one_store(_late_older_row_ignored)),
    _Check("check_ties_later_write_wins", _on_one_store(_ties_later_write_wins)),
    _Check("check_no_timestamp_last_write_wins", _on_one_store(_no_timestamp_last_write_wins)),
    _Check("check_batch_read_order_and_missing", _on_one_store(_batch_read_order_and_missing)),
    _Check("check_batch_read_of_1000_keys", _on_one_store(_batch_read_of_1000_keys)),
    _Check("check_ttl", _on_one_store(_ttl)),
    _Check("check_unknown_feature", _on_one_store(_unknown_feature)),
    _Check("check_missing_key_column", _on_one_store(_missing_key_column)),
    _Check("check_write_validation", _on_one_store(_write_validation)),
    _Check("check_delete", _on_one_store(_delete)),
    _Check("check_tables_and_drop", _on_one_store(_tables_and_drop)),
    _Check("check_lookup_matches_read", _on_one_store(_lookup_matches_read)),
    _Check(
        "check_concurrent_interleaved_writes_keep_newest",
        _on_the_factory(_concurrent_interleaved_writes_keep_newest),
        needs=("shared",),
    ),
    _Check(
        "check_reader_sees_table_recreated_elsewhere",
        _on_the_factory(_reader_sees_table_recreated_elsewhere),
        needs=("shared",),
    ),
)
assert {n for c in _CHECKS for n in c.needs} <= {f.name for f in fields(OnlineStoreCapabilities)}


def online_store_checks(
    capabilities: OnlineStoreCapabilities | None = None,
) -> Iterator[tuple[str, OnlineStoreCheck]]:
    """``(name, check)`` for every check a store with ``capabilities`` must pass."""
    declared = capabilities or OnlineStoreCapabilities()
    for check in _CHECKS:
        if all(getattr(declared, need) for need in check.needs):
            yield check.name, check.run


def parametrize_online_store_checks(
    capabilities: OnlineStoreCapabilities | None = None,
) -> pytest.MarkDecorator:
    """``pytest.mark.parametrize("check", ...)`` over :func:`online_store_checks`, by name.

    The decorated test takes ``check`` and calls it with its store factory.
    """
    pairs = list(online_store_checks(capabilities))
    return pytest.mark.parametrize("check", [c for _, c in pairs], ids=[n for n, _ in pairs])


def check_online_store(
    factory: StoreFactory, capabilities: OnlineStoreCapabilities | None = None
) -> None:
    """Run every check a store with ``capabilities`` must pass; the first failure raises.

    The exception carries a note naming the check that failed.
    """
    for name, check in online_store_checks(capabilities):
        try:
            check(factory)
        except BaseException as exc:
            exc.add_note(f"online store conformance check {name} failed")
            raise
