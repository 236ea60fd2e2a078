"""Vector indexes on LanceDB, synced from Delta tables' change data feeds.

Declared under ``vector_indexes:`` in ``lakeforge.yaml``; ``ws.vectors`` (or the functions
here, taking the workspace first) syncs, searches, pins and rolls back. Names load on
first use, so importing the package does not import LanceDB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

if TYPE_CHECKING:
    from lakeforge.vectors._filters import check_filter
    from lakeforge.vectors._indexes import IndexInfo, VectorIndexes, ensure_index, list_indexes
    from lakeforge.vectors._pins import HistoryEntry, history, pin, rollback
    from lakeforge.vectors._search import MAX_K, QUERY_TYPES, QueryType, search, search_ref
    from lakeforge.vectors._store import IndexRef, VectorIndexError, resolve
    from lakeforge.vectors._sync import SyncResult, sync

__all__ = [
    "MAX_K",
    "QUERY_TYPES",
    "HistoryEntry",
    "IndexInfo",
    "IndexRef",
    "QueryType",
    "SyncResult",
    "VectorIndexError",
    "VectorIndexes",
    "check_filter",
    "ensure_index",
    "history",
    "list_indexes",
    "pin",
    "resolve",
    "rollback",
    "search",
    "search_ref",
    "sync",
]

__getattr__ = lazy_names(
    __name__,
    {
        "check_filter": "_filters",
        "IndexInfo": "_indexes",
        "VectorIndexes": "_indexes",
        "ensure_index": "_indexes",
        "list_indexes": "_indexes",
        "HistoryEntry": "_pins",
        "history": "_pins",
        "pin": "_pins",
        "rollback": "_pins",
        "MAX_K": "_search",
        "QUERY_TYPES": "_search",
        "QueryType": "_search",
        "search": "_search",
        "search_ref": "_search",
        "IndexRef": "_store",
        "VectorIndexError": "_store",
        "resolve": "_store",
        "SyncResult": "_sync",
        "sync": "_sync",
    },
)
