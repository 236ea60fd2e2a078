"""The lakehouse: Delta tables per target, SQL over them, expectations and ingestion."""

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
