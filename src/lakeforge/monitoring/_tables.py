"""The monitor's Delta tables: ``<table>_profile_metrics`` and ``<table>_drift_metrics`` in
Databricks Lakehouse Monitoring's shape (its ``window`` struct flattened), and
``<table>_monitor_state``, the per-window column summaries a refresh keeps so that
neighbouring windows and the baseline are never read again.

Each refresh replaces the rows of the windows it recomputed in each table with one
commit (``replace_where``) carrying the monitor's application transactions: the
monitored table's version (and the labels table's) it has processed. A table that
already holds those versions is skipped, so a refresh rerun after a crash between two
tables' commits writes no row twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import CommitProperties, Transaction

from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import TableName
from lakeforge.project import (
    COLUMN_METRICS,
    DRIFT_DELTAS,
    DRIFT_STATISTICS,
    DRIFT_VERDICTS,
    HEALTH_METRICS,
    QUALITY_METRICS,
    MonitorSpec,
)

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

TS = pa.timestamp("us", tz="UTC")
APP_PREFIX = "lakeforge-monitor/"

KEY_FIELDS = [
    pa.field("window_start", TS),
    pa.field("window_end", TS),
    pa.field("granularity", pa.string()),
    pa.field("model_version", pa.string()),
    pa.field("slice_key", pa.string()),
    pa.field("slice_value", pa.string()),
    pa.field("column_name", pa.string()),
    pa.field("data_type", pa.string()),
    pa.field("monitor_name", pa.string()),
    pa.field("refreshed_at", TS),
    pa.field("logging_table_commit_version", pa.int64()),
]
_D = pa.float64()
_TYPES = {
    "log_type": pa.string(),
    "count": pa.int64(),
    "num_nulls": pa.int64(),
    "num_zeros": pa.int64(),
    "distinct_count": pa.int64(),
    "quantiles": pa.list_(_D),
    "frequent_items": pa.list_(
        pa.struct([pa.field("item", pa.string()), pa.field("count", pa.int64())])
    ),
    "request_count": pa.int64(),
    "drift_type": pa.string(),
    "window_cmp_start": TS,
    "window_cmp_end": TS,
    "drift_method": pa.string(),
    "drift_detected": pa.bool_(),
    "dataset_drift": pa.bool_(),
}
"""The metric columns that are not doubles."""


def _fields(*names: str) -> list[pa.Field]:
    return [pa.field(name, _TYPES.get(name, _D)) for name in names]


PROFILE_FIELDS = _fields("log_type", *COLUMN_METRICS, *QUALITY_METRICS, *HEALTH_METRICS)
DRIFT_FIELDS = _fields(
    "drift_type",
    "window_cmp_start",
    "window_cmp_end",
    *DRIFT_STATISTICS,
    *DRIFT_DELTAS,
    "drift_method",
    *DRIFT_VERDICTS,
)
STATE_SCHEMA = pa.schema(
    [
        pa.field("monitor_name", pa.string()),
        pa.field("log_type", pa.string()),  # INPUT | BASELINE
        pa.field("granularity", pa.string()),
        pa.field("window_start", TS),
        pa.field("window_end", TS),
        pa.field("model_version", pa.string()),
        pa.field("slice_key", pa.string()),
        pa.field("slice_value", pa.string()),
        pa.field("column_name", pa.string()),
        pa.field("data_type", pa.string()),
        pa.field("summary", pa.binary()),  # ColumnSummary.to_bytes(); null on ':table' rows
        pa.field("metrics", pa.string()),  # JSON: custom metric values of this key
        pa.field("logging_table_commit_version", pa.int64()),
    ]
)


def profile_schema(spec: MonitorSpec) -> pa.Schema:
    """The profile metrics table's columns: keys, metrics, then one per custom metric."""
    custom = [pa.field(m.name, _D) for m in spec.custom_metrics if m.type != "drift"]
    return pa.schema([*KEY_FIELDS, *PROFILE_FIELDS, *custom])


def drift_schema(spec: MonitorSpec) -> pa.Schema:
    custom = [pa.field(m.name, _D) for m in spec.custom_metrics if m.type == "drift"]
    return pa.schema([*KEY_FIELDS, *DRIFT_FIELDS, *custom])


@dataclass(frozen=True)
class OutputTables:
    """Where a monitor writes: its two metric tables and its state table."""

    profile: TableName
    drift: TableName
    state: TableName


def output_tables_of(spec: MonitorSpec, catalog: str) -> OutputTables:
    """The monitor's tables, in ``output_schema`` (default: the monitored table's schema)."""
    source = TableName.parse(spec.table, default_catalog=catalog)
    schema = spec.output_schema or f"{source.catalog}.{source.schema}"
    if schema.count(".") == 0:
        schema = f"{source.catalog}.{schema}"
    if schema.count(".") != 1:
        raise LakeforgeError(
            f"monitor {spec.name}: output_schema {spec.output_schema!r} is not schema or "
            "catalog.schema"
        )
    base = TableName.parse(f"{schema}.{source.table}")
    return OutputTables(
        base.sibling(f"{source.table}_profile_metrics"),
        base.sibling(f"{source.table}_drift_metrics"),
        base.sibling(f"{source.table}_monitor_state"),
    )


def app_id(monitor: str, what: str = "table") -> str:
    """The application transaction id a monitor's commits carry for a source table."""
    return f"{APP_PREFIX}{monitor}/{what}"


def processed_version(ws: Workspace, table: TableName, app: str) -> int | None:
    """The source version ``table`` says the monitor has processed (None: none yet)."""
    if not ws.tables.exists(table):
        return None
    version = ws.tables.delta(table).transaction_version(app)
    return None if version is None else int(version)


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def window_predicate(granularity: str, starts: Iterable[datetime]) -> str:
    """Rows of these windows of one granularity, as a delta-rs predicate."""
    times = " OR ".join(f"window_start = '{s.isoformat()}'" for s in sorted(set(starts)))
    return f"(granularity = {sql_text(granularity)} AND ({times}))"


def replace_rows(
    ws: Workspace,
    table: TableName,
    rows: pa.Table,
    *,
    predicate: str,
    versions: dict[str, int],
) -> int | None:
    """Replace the rows matching ``predicate`` with ``rows`` in one commit carrying the
    application transactions ``versions`` (app id -> version). Transactions the table
    already has are dropped; with none left the write is skipped (returns None)."""
    pending = versions
    if ws.tables.exists(table):
        dt = ws.tables.delta(table)
        pending = {}
        for app, version in versions.items():
            done = dt.transaction_version(app)
            if done is None or done < version:
                pending[app] = version
        if not pending and versions:
            return None
    properties = CommitProperties(
        app_transactions=[Transaction(app, version) for app, version in pending.items()]
    )
    exists = ws.tables.exists(table)
    result = ws.tables.write(
        table,
        rows,
        mode="overwrite" if exists else "append",
        replace_where=predicate if exists else None,
        commit_properties=properties,
        quality_log=False,
    )
    return result.version


def to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Row dicts as a table of ``schema`` (missing metrics are null)."""
    return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema)
