"""The online stores: SQLite and Redis pass the conformance suite, under concurrency too."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from lakeforge.errors import ConfigError, TableNotFoundError
from lakeforge.features.online import OnlineStore, UnknownFeatureError, open_online_store

from .conformance import CHECKS, Check, check_online_store, run_check

REDIS_URL = "redis://127.0.0.1:6379/0"
Factory = Callable[[], OnlineStore]


def _cleanup_redis(namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        names = list(client.scan_iter(match=f"lakeforge:{namespace}:*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """Opens stores that share one backend and one fresh namespace."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    uri = f"sqlite:///{tmp_path}/online.db" if request.param == "sqlite" else REDIS_URL
    opened: list[OnlineStore] = []

    def make() -> OnlineStore:
        store = open_online_store(uri, namespace=namespace)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if request.param == "redis":
        _cleanup_redis(namespace)


@pytest.fixture
def store(factory: Factory) -> OnlineStore:
    return factory()


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
def test_conformance_check(store: OnlineStore, check: Check) -> None:
    run_check(store, check)


def test_conformance_suite(store: OnlineStore) -> None:
    check_online_store(store)
    assert store.tables() == []


def test_concurrent_interleaved_writes_keep_newest(factory: Factory) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ids = list(range(20))
    n_threads, n_versions = 4, 15
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        store = factory()  # one connection per thread, as separate processes would have
        try:
            # Each thread writes its own versions, newest and oldest interleaved.
            versions = [v for v in range(n_versions) if v % n_threads == worker]
            order = [x for pair in zip(versions[::-1], versions, strict=True) for x in pair]
            for v in order or versions:
                rows = pa.table(
                    {
                        "id": ids,
                        "ts": pa.array([t0 + timedelta(minutes=v)] * len(ids)),
                        "version": [v] * len(ids),
                    }
                )
                store.write("events", rows, keys=["id"], timestamp="ts", features=["version"])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    out = factory().read("events", pa.table({"id": ids}), keys=["id"])
    assert out.column("version").to_pylist() == [n_versions - 1] * len(ids)


def test_a_reader_sees_a_table_recreated_by_another_connection(factory: Factory) -> None:
    """Stores may cache table specs; a reader must still see a drop and a new schema."""
    reader, writer = factory(), factory()
    keys = pa.table({"k": pa.array([1], pa.int64())})
    writer.write("t", pa.table({"k": [1], "x": [1.5]}), keys=["k"], timestamp=None, features=["x"])
    assert reader.read("t", keys, keys=["k"]).column("x").to_pylist() == [1.5]
    writer.drop("t")
    with pytest.raises(TableNotFoundError):
        reader.read("t", keys, keys=["k"])
    writer.write("t", pa.table({"k": [1], "y": ["a"]}), keys=["k"], timestamp=None, features=["y"])
    assert reader.read("t", keys, keys=["k"]).column("y").to_pylist() == ["a"]
    with pytest.raises(UnknownFeatureError):
        reader.read("t", keys, keys=["k"], features=["x"])


def test_batch_read_of_1000_keys(store: OnlineStore) -> None:
    n = 1_000
    rows = pa.table(
        {
            "id": [f"user-{i}" for i in range(n)],
            "ts": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * n),
            "score": [i / 2 for i in range(n)],
        }
    )
    assert store.write("users", rows, keys=["id"], timestamp="ts", features=["score"]) == n
    wanted = [f"user-{i}" for i in range(n + 200)][::-1]  # 200 missing, reversed order
    out = store.read("users", pa.table({"id": wanted}), keys=["id"])
    assert out.num_rows == len(wanted)
    assert out.column("id").to_pylist() == wanted
    assert out.column("score").to_pylist() == [None] * 200 + [i / 2 for i in range(n)][::-1]


def test_unknown_scheme_lists_known() -> None:
    with pytest.raises(ConfigError, match="'mongo'") as info:
        open_online_store("mongo://x", namespace="ns")
    assert "'redis'" in str(info.value) and "'sqlite'" in str(info.value)


def test_missing_redis_package_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigError, match=r"lakeforge\[redis\]"):
        open_online_store(REDIS_URL, namespace="ns")


def test_sqlite_file_is_created_under_given_path(tmp_path: Path) -> None:
    path = tmp_path / "target" / "online.db"
    with open_online_store(f"sqlite:///{path}", namespace="dev") as store:
        store.write(
            "t", pa.table({"id": [1], "x": [1]}), keys=["id"], timestamp=None, features=["x"]
        )
    assert path.exists()
    with open_online_store(f"sqlite:///{path}", namespace="prod") as other:
        assert other.tables() == []  # namespaces are separate


def test_backend_classes_are_exported_lazily() -> None:
    import lakeforge.features.online as online

    assert online.SqliteOnlineStoreConfig(path=Path("x.db"), namespace="n").type == "sqlite"
    assert online.RedisOnlineStoreConfig(url=REDIS_URL, namespace="n").type == "redis"
    assert issubclass(online.SqliteOnlineStore, OnlineStore)
    assert issubclass(online.RedisOnlineStore, OnlineStore)
    assert set(online.__all__) <= set(dir(online)) | {
        "RedisOnlineStore",
        "RedisOnlineStoreConfig",
        "SqliteOnlineStore",
        "SqliteOnlineStoreConfig",
    }
