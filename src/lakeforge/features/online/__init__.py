"""Online feature stores: the latest feature row per key, for serving.

Open one by URI with :func:`open_online_store`: ``sqlite:///path/online.db`` (embedded
default; SQLAlchemy-style, so ``sqlite:////abs/online.db`` is absolute) or
``redis://host:port/db`` (needs ``pip install 'lakeforge[redis]'``). Third parties add a
scheme through the ``lakeforge.online_stores`` entry point group: a callable
``(uri, namespace) -> OnlineStore`` (a subclass implementing the primitives on
:class:`OnlineStore`, over :class:`TableSpec`, :class:`Record` and :class:`Stored`) that
passes ``lakeforge.testing.check_online_store``.

Read with :meth:`OnlineStore.read` (a keys table in, an Arrow table out) or
:meth:`OnlineStore.lookup` (Python rows in and out: the cheap path for the few keys of
one request). Each read is one round trip that also checks the table's spec is current.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, cast

from lakeforge.errors import ConfigError
from lakeforge.features.online._base import OnlineStore
from lakeforge.features.online._codec import (
    OnlineStoreError,
    Record,
    Stored,
    TableSpec,
    UnknownFeatureError,
)

if TYPE_CHECKING:
    from lakeforge.features.online._redis import RedisOnlineStore, RedisOnlineStoreConfig
    from lakeforge.features.online._sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig

__all__ = [
    "OnlineStore",
    "OnlineStoreError",
    "Record",
    "RedisOnlineStore",
    "RedisOnlineStoreConfig",
    "SqliteOnlineStore",
    "SqliteOnlineStoreConfig",
    "Stored",
    "TableSpec",
    "UnknownFeatureError",
    "open_online_store",
]

Builder = Callable[[str, str], OnlineStore]
ENTRY_POINT_GROUP = "lakeforge.online_stores"


def _open_sqlite(uri: str, namespace: str) -> OnlineStore:
    from lakeforge.features.online._sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig

    path = uri.split(":///", 1)[1] if ":///" in uri else ""
    if not path:
        raise ConfigError(
            f"online store URI {uri!r} names no file", hint="use sqlite:///path/online.db"
        )
    config = SqliteOnlineStoreConfig(path=Path(path), namespace=namespace)
    return SqliteOnlineStore(config)


def _open_redis(uri: str, namespace: str) -> OnlineStore:
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"online store {uri!r} needs the 'redis' package",
            hint="pip install 'lakeforge[redis]'",
        ) from exc
    from lakeforge.features.online._redis import RedisOnlineStore, RedisOnlineStoreConfig

    return RedisOnlineStore(RedisOnlineStoreConfig(url=uri, namespace=namespace))


_BUILDERS: dict[str, Builder] = {
    "sqlite": _open_sqlite,
    "redis": _open_redis,
    "rediss": _open_redis,
    "unix": _open_redis,
}


def _plugins() -> dict[str, Builder]:
    return {ep.name: cast(Builder, ep.load()) for ep in entry_points(group=ENTRY_POINT_GROUP)}


def open_online_store(uri: str, *, namespace: str) -> OnlineStore:
    """Open the online store at ``uri``; tables live in ``namespace`` (e.g. a target name)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    builder = _BUILDERS.get(scheme)
    if builder is None:
        plugins = _plugins()
        builder = plugins.get(scheme)
        if builder is None:
            known = sorted({*_BUILDERS, *plugins})
            raise ConfigError(
                f"unknown online store scheme {scheme!r} in {uri!r}",
                hint=f"the known schemes are {known}",
            )
    return builder(uri, namespace)


def __getattr__(name: str) -> object:
    """Import the backend classes lazily, so ``redis`` is needed only when used."""
    if name in ("SqliteOnlineStore", "SqliteOnlineStoreConfig"):
        from lakeforge.features.online import _sqlite

        return getattr(_sqlite, name)
    if name in ("RedisOnlineStore", "RedisOnlineStoreConfig"):
        from lakeforge.features.online import _redis

        return getattr(_redis, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
