"""The online read path: one round trip, no script, plans cached safely, atomic rows."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lakeforge.errors import SchemaMismatchError
from lakeforge.features.online import OnlineStore, TableSpec, open_online_store
from lakeforge.features.online._codec import keys_for_read
from lakeforge.features.online._reads import ReadPlan

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path}/online.db" if request.param == "sqlite" else REDIS_URL


@pytest.fixture
def namespace(uri: str) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    if uri.startswith("redis"):
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            names = list(client.scan_iter(match=f"lakeforge:{name}:*", count=1000))
            if names:
                client.delete(*names)
        finally:
            client.close()


def _publish(store: OnlineStore, n: int = 200) -> None:
    rows = pa.table(
        {"k": list(range(n)), "x": [i / 2 for i in range(n)], "s": [str(i) for i in range(n)]}
    )
    store.write("t", rows, keys=["k"], timestamp=None, features=["x", "s"])


@pytest.mark.redis
def test_redis_read_is_one_round_trip_without_a_script(monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.connection import Connection

    sent: list[bytes] = []
    original = Connection.send_packed_command

    def spy(self: Connection, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        original(self, command, check_health)  # type: ignore[no-untyped-call]

    namespace = f"test-{uuid.uuid4().hex[:12]}"
    with open_online_store(REDIS_URL, namespace=namespace) as store:
        try:
            _publish(store)
            store.read("t", pa.table({"k": [1]}), keys=["k"])  # reads and caches the spec
            monkeypatch.setattr(Connection, "send_packed_command", spy)
            one = store.read("t", pa.table({"k": [3]}), keys=["k"])
            many = store.read("t", pa.table({"k": list(range(150, 250))}), keys=["k"])
        finally:
            monkeypatch.undo()
            store.drop("t")
    assert one.column("x").to_pylist() == [1.5]
    assert many.column("s").to_pylist() == [str(i) for i in range(150, 200)] + [None] * 50
    assert len(sent) == 2  # one send per read: one round trip each
    for payload in sent:
        assert payload.startswith(b"*1\r\n$5\r\nMULTI\r\n") and payload.endswith(b"$4\r\nEXEC\r\n")
        assert b"EVAL" not in payload.upper()
    assert sent[1].count(b"HMGET") == 100


def test_sqlite_read_is_one_statement(tmp_path: Path) -> None:
    with open_online_store(f"sqlite:///{tmp_path}/o.db", namespace="n") as store:
        _publish(store)
        store.read("t", pa.table({"k": [1]}), keys=["k"])
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)  # type: ignore[attr-defined]
        one = store.read("t", pa.table({"k": [3]}), keys=["k"])
        many = store.read("t", pa.table({"k": [5, 999, 5]}), keys=["k"])
    assert one.column("x").to_pylist() == [1.5]
    assert many.column("x").to_pylist() == [2.5, None, 2.5]
    assert len(statements) == 2


def test_cached_plans_follow_key_types_and_features(uri: str, namespace: str) -> None:
    with open_online_store(uri, namespace=namespace) as store:
        _publish(store)
        wide = pa.table({"k": pa.array([4, 7], pa.int64())})
        narrow = pa.table({"k": pa.array([4, 7], pa.int8())})
        assert store.read("t", wide, keys=["k"]).column("x").to_pylist() == [2.0, 3.5]
        out = store.read("t", narrow, keys=["k"], features=["s"])
        assert out.schema == pa.schema([("k", pa.int8()), ("s", pa.string())])
        assert out.column("s").to_pylist() == ["4", "7"]
        with pytest.raises(SchemaMismatchError, match="'k'"):
            store.read("t", pa.table({"k": ["4"]}), keys=["k"])
        assert store.read("t", wide, keys=["k"]).column_names == ["k", "x", "s"]


@pytest.mark.parametrize(
    "columns",
    [
        {"a": pa.array([1, -2, None, 2**40], pa.int64())},
        {"a": pa.array(["x", 'q"uote\\', "héllo\n", None], pa.string())},
        {"a": pa.array([1, 2, 3, 4], pa.int16()), "b": pa.array(["é", "", "z", "\u2028"])},
        {
            "a": pa.array([date(2024, 1, d) for d in range(1, 5)], pa.date32()),
            "b": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * 4, pa.timestamp("us", "UTC")),
            "c": pa.array([True, False, None, True]),
            "d": pa.array([1.5, -0.0, float("inf"), None]),
        },
    ],
)
def test_plan_encodes_keys_as_writes_do(columns: dict[str, pa.Array]) -> None:
    keys_table = pa.table(columns)
    spec = TableSpec(
        name="t",
        schema=pa.schema([*keys_table.schema, pa.field("x", pa.float64())]),
        keys=tuple(columns),
        timestamp=None,
        features=("x",),
    )
    plan = ReadPlan.build(spec, keys_table.schema, list(columns), None)
    assert plan.encode(keys_table) == keys_for_read(keys_table, list(columns), spec)
    # keys given in another integer width are cast first, as the generic path does
    if pa.types.is_integer(keys_table.schema.field(0).type):
        narrow = keys_table.set_column(0, "a", keys_table.column(0).cast(pa.int64()))
        plan = ReadPlan.build(spec, narrow.schema, list(columns), None)
        assert plan.encode(narrow) == keys_for_read(keys_table, list(columns), spec)


_WRITER = """
import sys
from datetime import UTC, datetime, timedelta
import pyarrow as pa
from lakeforge.features.online import open_online_store

uri, namespace, versions = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = datetime(2024, 1, 1, tzinfo=UTC)
ids = list(range(20))
with open_online_store(uri, namespace=namespace) as store:
    for v in range(1, versions + 1):
        rows = pa.table(
            {
                "id": ids,
                "ts": pa.array([t0 + timedelta(seconds=v)] * 20, pa.timestamp("us", "UTC")),
                "a": [v] * 20,
                "b": [float(v)] * 20,
                "c": [str(v)] * 20,
            }
        )
        store.write("t", rows, keys=["id"], timestamp="ts", features=["a", "b", "c"])
"""


@pytest.mark.slow
def test_reader_never_sees_a_half_written_row(uri: str, namespace: str) -> None:
    """One process publishes versions of every row while this one reads them."""
    ids = list(range(20))
    first = pa.table(
        {
            "id": ids,
            "ts": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * 20, pa.timestamp("us", "UTC")),
            "a": [0] * 20,
            "b": [0.0] * 20,
            "c": ["0"] * 20,
        }
    )
    seen: set[int] = set()
    last = [0] * len(ids)
    with open_online_store(uri, namespace=namespace) as store:
        store.write("t", first, keys=["id"], timestamp="ts", features=["a", "b", "c"])
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, uri, namespace, "100"])
        try:
            while writer.poll() is None:
                for keys in (pa.table({"id": ids}), pa.table({"id": [len(seen) % 20]})):
                    out = store.read("t", keys, keys=["id"]).to_pydict()
                    for key, a, b, c in zip(out["id"], out["a"], out["b"], out["c"], strict=True):
                        assert (b, c) == (float(a), str(a)), f"row {key} mixes versions"
                        assert a >= last[key], f"row {key} went back from {last[key]} to {a}"
                        last[key] = a
                        seen.add(a)
        finally:
            writer.wait(timeout=60)
        assert writer.returncode == 0
        final = store.read("t", pa.table({"id": ids}), keys=["id"])
        store.drop("t")
    assert final.column("a").to_pylist() == [100] * 20
    assert len(seen - {0, 100}) >= 2  # the reads overlapped the publishing


def test_lookup_takes_numpy_integers_and_refuses_other_types(tmp_path: Path) -> None:
    import numpy as np

    with open_online_store(f"sqlite:///{tmp_path}/o.db", namespace="n") as store:
        _publish(store)
        assert store.lookup("t", [{"k": np.int64(4)}, {"k": np.int8(7)}]) == [
            {"k": 4, "x": 2.0, "s": "4"},
            {"k": 7, "x": 3.5, "s": "7"},
        ]
        for bad in (True, "4", 4.0):
            with pytest.raises(SchemaMismatchError, match=r"key column 'k' has value .* int64"):
                store.lookup("t", [{"k": bad}])
        assert store.lookup("t", [{"k": None}]) == [{"k": None, "x": None, "s": None}]


@pytest.mark.redis
def test_redis_refused_read_names_the_error_and_leaves_the_connection_usable() -> None:
    import redis

    from lakeforge.features.online import OnlineStoreError

    namespace = f"test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    with open_online_store(REDIS_URL, namespace=namespace) as store:
        try:
            _publish(store)
            client.set(f"lakeforge:{namespace}:t:[3]", "not a hash")  # a foreign key
            with pytest.raises(OnlineStoreError, match="WRONGTYPE"):
                store.read("t", pa.table({"k": [2, 3]}), keys=["k"])
            for _ in range(3):  # no reply of the failed read is left for the next one
                assert store.lookup("t", [{"k": 2}]) == [{"k": 2, "x": 1.0, "s": "2"}]
        finally:
            store.drop("t")
            client.close()
