"""The lakehouse: Delta tables per target, SQL over them, expectations and ingestion.

Names load on first use, so importing one (``TableName``) does not import DuckDB,
delta-rs and the state store with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

if TYPE_CHECKING:
    from lakeforge.lakehouse._arrow import (
        can_cast,
        comments_of,
        conform,
        materialize,
        parse_columns,
        primary_keys_of,
        to_arrow,
        type_kind,
    )
    from lakeforge.lakehouse._commits import TransactionConflictError
    from lakeforge.lakehouse._duckdb import (
        connect_duckdb,
        parse_tree,
        register_snapshot,
        tree_nodes,
    )
    from lakeforge.lakehouse._expectations import (
        Expectation,
        expect,
        expect_or_drop,
        expect_or_fail,
    )
    from lakeforge.lakehouse._ingest import (
        Ingestor,
        IngestProgress,
        IngestReport,
        IngestStatus,
        ProgressCallback,
    )
    from lakeforge.lakehouse._ingest_files import FORMATS, FileFormat
    from lakeforge.lakehouse._locations import TableLocations
    from lakeforge.lakehouse._names import TableName
    from lakeforge.lakehouse._sql import SqlSession, find_table_refs
    from lakeforge.lakehouse._tables import Lakehouse, TableInfo
    from lakeforge.lakehouse._writes import SYSTEM_SCHEMA, WriteMode, WriteResult, check_unique

_HOME = {
    "can_cast": "_arrow",
    "comments_of": "_arrow",
    "conform": "_arrow",
    "materialize": "_arrow",
    "parse_columns": "_arrow",
    "primary_keys_of": "_arrow",
    "to_arrow": "_arrow",
    "type_kind": "_arrow",
    "TransactionConflictError": "_commits",
    "connect_duckdb": "_duckdb",
    "parse_tree": "_duckdb",
    "register_snapshot": "_duckdb",
    "tree_nodes": "_duckdb",
    "Expectation": "_expectations",
    "expect": "_expectations",
    "expect_or_drop": "_expectations",
    "expect_or_fail": "_expectations",
    "Ingestor": "_ingest",
    "IngestProgress": "_ingest",
    "IngestReport": "_ingest",
    "IngestStatus": "_ingest",
    "ProgressCallback": "_ingest",
    "FORMATS": "_ingest_files",
    "FileFormat": "_ingest_files",
    "TableName": "_names",
    "TableLocations": "_locations",
    "SqlSession": "_sql",
    "find_table_refs": "_sql",
    "Lakehouse": "_tables",
    "TableInfo": "_tables",
    "SYSTEM_SCHEMA": "_writes",
    "WriteMode": "_writes",
    "WriteResult": "_writes",
    "check_unique": "_writes",
}


__getattr__ = lazy_names(__name__, _HOME)


__all__ = [
    "FORMATS",
    "SYSTEM_SCHEMA",
    "Expectation",
    "FileFormat",
    "IngestProgress",
    "IngestReport",
    "IngestStatus",
    "Ingestor",
    "Lakehouse",
    "ProgressCallback",
    "SqlSession",
    "TableInfo",
    "TableLocations",
    "TableName",
    "TransactionConflictError",
    "WriteMode",
    "WriteResult",
    "can_cast",
    "check_unique",
    "comments_of",
    "conform",
    "connect_duckdb",
    "expect",
    "expect_or_drop",
    "expect_or_fail",
    "find_table_refs",
    "materialize",
    "parse_columns",
    "parse_tree",
    "primary_keys_of",
    "register_snapshot",
    "to_arrow",
    "tree_nodes",
    "type_kind",
]
