"""The online stores: SQLite and Redis pass the public conformance suite, concurrency too."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from lakeforge.errors import ConfigError
from lakeforge.features.online import OnlineStore, open_online_store
from lakeforge.testing import (
    OnlineStoreCheck,
    StoreFactory,
    check_online_store,
    online_store_checks,
    parametrize_online_store_checks,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


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
def factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores that share one backend and one fresh namespace."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    uri = f"sqlite:///{tmp_path}/online.db" if request.param == "sqlite" else REDIS_URL

    def make() -> OnlineStore:
        return open_online_store(uri, namespace=namespace)

    yield make
    if request.param == "redis":
        _cleanup_redis(namespace)


@parametrize_online_store_checks()
def test_conformance_check(factory: StoreFactory, check: OnlineStoreCheck) -> None:
    check(factory)
    with factory() as store:
        assert store.tables() == []  # each check drops what it wrote


def test_conformance_suite(factory: StoreFactory) -> None:
    check_online_store(factory)
    with factory() as store:
        assert store.tables() == []


def test_the_suite_runs_every_check_by_default() -> None:
    names = [name for name, _ in online_store_checks()]
    assert len(names) == len(set(names)) >= 15
    assert "check_concurrent_interleaved_writes_keep_newest" in names


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
