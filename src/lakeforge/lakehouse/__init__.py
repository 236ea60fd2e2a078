"""The lakehouse: Delta tables per target, SQL over them, expectations and ingestion.

Names load on first use, so importing one (``TableName``) does not import DuckDB,
delta-rs and the state store with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeforge.lakehouse._arrow import parse_columns
    from lakeforge.lakehouse._expectations import (
        Expectation,
        expect,
        expect_or_drop,
        expect_or_fail,
    )
    from lakeforge.lakehouse._ingest import Ingestor, IngestProgress, IngestReport, IngestStatus
    from lakeforge.lakehouse._names import TableName
    from lakeforge.lakehouse._sql import SqlSession, find_table_refs
    from lakeforge.lakehouse._tables import Lakehouse, TableInfo, WriteResult

_HOME = {
    "parse_columns": "_arrow",
    "Expectation": "_expectations",
    "expect": "_expectations",
    "expect_or_drop": "_expectations",
    "expect_or_fail": "_expectations",
    "Ingestor": "_ingest",
    "IngestProgress": "_ingest",
    "IngestReport": "_ingest",
    "IngestStatus": "_ingest",
    "TableName": "_names",
    "SqlSession": "_sql",
    "find_table_refs": "_sql",
    "Lakehouse": "_tables",
    "TableInfo": "_tables",
    "WriteResult": "_tables",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeforge.lakehouse' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lakeforge.lakehouse.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Expectation",
    "IngestProgress",
    "IngestReport",
    "IngestStatus",
    "Ingestor",
    "Lakehouse",
    "SqlSession",
    "TableInfo",
    "TableName",
    "WriteResult",
    "expect",
    "expect_or_drop",
    "expect_or_fail",
    "find_table_refs",
    "parse_columns",
]
