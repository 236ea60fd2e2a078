"""``ws.vectors``: the declared indexes of a target, as thin pass-throughs to the functions."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakeforge.vectors._pins import HistoryEntry, history, pin, pinned_version, rollback
from lakeforge.vectors._pins import synced_delta_version as _synced
from lakeforge.vectors._search import QueryType, search
from lakeforge.vectors._store import open_table, resolve
from lakeforge.vectors._sync import SyncResult, create, sync

if TYPE_CHECKING:
    import pyarrow as pa

    from lakeforge._workspace import Workspace


@dataclass(frozen=True)
class IndexInfo:
    """A declared index and where it stands."""

    name: str  # schema.name, as declared
    source: str
    uri: str
    synced_delta_version: int | None  # None: never synced
    latest_version: int | None  # the newest LanceDB version
    pinned_version: int | None  # the version search reads
    rows: int | None  # at the pinned version


def list_indexes(ws: Workspace) -> builtins.list[IndexInfo]:
    """The target's declared indexes, with their synced, latest and pinned versions."""
    found = []
    for name, spec in sorted(ws.project.config.vector_indexes.items()):
        ref = resolve(ws, name)
        table = open_table(ref)
        pinned = None if table is None else pinned_version(ref)
        rows = None
        if table is not None and pinned is not None:
            from lakeforge.vectors._store import open_version

            rows = open_version(ref, pinned).count_rows()
        found.append(
            IndexInfo(
                name=name,
                source=spec.source,
                uri=f"{ref.uri}/{ref.table}.lance",
                synced_delta_version=None if table is None else _synced(table),
                latest_version=None if table is None else table.version,
                pinned_version=pinned,
                rows=rows,
            )
        )
    return found


def ensure_index(ws: Workspace, name: str) -> bool:
    """Create the index's empty table if missing (``lakeforge deploy``); whether it did.

    An index whose source table does not exist yet, or of precomputed vectors (their
    size is known once rows arrive), is created by its first sync.
    """
    ref = resolve(ws, name)
    exists = open_table(ref) is not None
    if exists or ref.spec.embedding is None or not ws.tables.exists(ref.spec.source):
        return False
    create(ws, ref)
    return True


class VectorIndexes:
    """The vector indexes of one target (``ws.vectors``)."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def list(self) -> builtins.list[IndexInfo]:
        """The declared indexes and where each stands."""
        return list_indexes(self._ws)

    def sync(
        self,
        name: str,
        *,
        full: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> SyncResult:
        """Sync an index with its source; see :func:`lakeforge.vectors.sync`."""
        return sync(self._ws, name, full=full, progress=progress)

    def search(
        self,
        name: str,
        text: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        k: int = 10,
        filter: str | None = None,
        query_type: QueryType = "vector",
        columns: builtins.list[str] | None = None,
        version: int | None = None,
    ) -> pa.Table:
        """Search an index; see :func:`lakeforge.vectors.search`."""
        return search(
            self._ws,
            name,
            text,
            vector=vector,
            k=k,
            filter=filter,
            query_type=query_type,
            columns=columns,
            version=version,
        )

    def pin(self, name: str, version: int) -> int:
        """Make search read ``version``; see :func:`lakeforge.vectors.pin`."""
        return pin(self._ws, name, version)

    def rollback(self, name: str) -> int:
        """Pin the version pinned before; see :func:`lakeforge.vectors.rollback`."""
        return rollback(self._ws, name)

    def history(self, name: str) -> builtins.list[HistoryEntry]:
        """Synced versions, newest first; see :func:`lakeforge.vectors.history`."""
        return history(self._ws, name)
