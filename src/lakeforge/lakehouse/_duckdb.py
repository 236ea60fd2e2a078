"""DuckDB connections as Lakeforge uses them, and table snapshots registered on them.

A leaf of the lakehouse: it imports nothing else of the package at run time, so SQL,
the feature store and any capability can share these helpers without an import cycle.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    from lakeforge.lakehouse._names import TableName
    from lakeforge.lakehouse._tables import Lakehouse


def connect_duckdb() -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the settings Lakeforge relies on."""
    con = duckdb.connect()
    # Without this DuckDB may plan ASOF joins over Arrow scans as a nested loop (500x slower).
    con.execute("SET asof_loop_join_threshold = 0")
    return con


def parse_tree(sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of ``sql`` as JSON (``json_serialize_sql``): parsed, never run,
    on a connection without file access. One that does not parse has ``"error": true``."""
    con = duckdb.connect()
    try:
        con.execute("SET enable_external_access = false")
        row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    finally:
        con.close()
    tree: dict[str, Any] = json.loads(row[0]) if row else {"error": True}
    return tree


def tree_nodes(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in (a part of) a parse tree from :func:`parse_tree`."""
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from tree_nodes(child)
    elif isinstance(value, list):
        for child in value:
            yield from tree_nodes(child)


def register_snapshot(
    con: duckdb.DuckDBPyConnection,
    view: str,
    lakehouse: Lakehouse,
    name: TableName | str,
    *,
    version: int | None = None,
    as_of: datetime | None = None,
) -> list[str]:
    """Make a table snapshot scannable by DuckDB as ``view``; the local files it reads.

    Plain local snapshots are read by DuckDB's own parallel Parquet reader (DuckDB
    reads an Arrow dataset as one stream); others (partitioned, remote, deletion
    vectors) through delta-rs's Arrow dataset.
    """
    native = lakehouse.parquet_snapshot(name, version=version, as_of=as_of)
    if native is None:
        con.register(view, lakehouse.scan(name, version=version, as_of=as_of))
        return []
    files, schema = native
    columns = ", ".join(quote_ident(c) for c in schema.names)
    con.execute(
        f"CREATE TEMP VIEW {view} AS SELECT {columns} FROM "
        f"read_parquet({string_list(files)}, union_by_name = true)"
    )
    return files


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def string_list(values: list[str]) -> str:
    """``values`` as a SQL list of string literals."""
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"
