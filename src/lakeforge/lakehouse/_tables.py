"""The lakehouse catalog: Delta tables named ``catalog.schema.table`` under each target's root."""

from __future__ import annotations

import builtins
import difflib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, overload

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from lakeforge.errors import (
    LakeforgeError,
    PermissionDeniedError,
    SchemaMismatchError,
    TableExistsError,
    TableNotFoundError,
)
from lakeforge.lakehouse._arrow import (
    ArrowData,
    comments_of,
    conform,
    conform_stream,
    materialize,
    primary_keys_of,
    to_arrow,
    with_key_metadata,
)
from lakeforge.lakehouse._commits import (
    check_transactions,
    own_commit,
    retry_conflicts,
    with_write_id,
)
from lakeforge.lakehouse._expectations import (
    QUARANTINE_SUFFIX,
    Expectation,
    QualityOutcome,
    apply_expectations,
)
from lakeforge.lakehouse._names import TableName
from lakeforge.lakehouse._sql import parse_filter, query_dataset
from lakeforge.project import Project, Target

TABLES_DIR = "tables"
SYSTEM_SCHEMA = "system"
QUALITY_LOG = "quality_log"
CDF_CONFIG = {"delta.enableChangeDataFeed": "true"}

WriteMode = Literal["append", "overwrite"]
ReadListener = Callable[[TableName, DeltaTable], None]
Format = Literal["arrow", "pandas", "polars"]
SchemaEvolution = Literal["merge", "overwrite"]

_QUALITY_LOG_SCHEMA = pa.schema(
    [
        pa.field("write_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("table_version", pa.int64()),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("rule", pa.string()),
        pa.field("expression", pa.string()),
        pa.field("action", pa.string()),
        pa.field("rows_in", pa.int64(), nullable=False),
        pa.field("rows_failed", pa.int64()),
        pa.field("rows_written", pa.int64(), nullable=False),
        pa.field("rows_dropped", pa.int64(), nullable=False),
    ]
)


@dataclass
class TableInfo:
    """What ``describe`` reports about a table."""

    name: TableName
    location: str
    version: int
    schema: pa.Schema
    partition_columns: list[str]
    primary_keys: list[str]
    comment: str | None
    column_comments: dict[str, str]
    properties: dict[str, str]
    created_at: datetime | None
    num_files: int
    size_bytes: int
    num_rows: int


@dataclass
class WriteResult:
    """The outcome of one write: the version it made and what the expectations did."""

    table: TableName
    version: int | None
    operation: str
    rows_in: int
    rows_written: int
    rows_dropped: int = 0
    rule_failures: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


class Lakehouse:
    """Tables of one target, and read access to the targets its ``read_from`` names."""

    def __init__(self, project: Project, target: Target) -> None:
        self.project = project
        self.target = target
        #: Called with every table snapshot read for data (lineage for training runs).
        self.read_listeners: builtins.list[ReadListener] = []

    def _notify_read(self, table: TableName, dt: DeltaTable) -> None:
        for listener in self.read_listeners:
            listener(table, dt)

    # -- names, locations and permissions ---------------------------------------------

    def name(self, name: str | TableName) -> TableName:
        """Parse a table name; a two-part ``schema.table`` gets this target's catalog."""
        if isinstance(name, TableName):
            return name
        return TableName.parse(name, default_catalog=self.target.catalog)

    def owner_of(self, name: TableName, *, write: bool) -> Target:
        """The target that owns ``name``'s catalog, if this target may read (or write) it."""
        owner = self.project.target_for_catalog(name.catalog)
        if owner is None:
            raise TableNotFoundError(
                f"table {name}: unknown catalog {name.catalog!r}; "
                f"catalogs in project {self.project.name!r}: {', '.join(self.project.catalogs)}"
            )
        if owner.name == self.target.name:
            return owner
        if write:
            raise PermissionDeniedError(
                f"target {self.target.name!r} cannot write {name}: a target writes only its own "
                f"catalog ({self.target.catalog!r})",
                hint=f"run with -t {owner.name} to write that table",
            )
        if owner.name not in self.target.read_from:
            raise PermissionDeniedError(
                f"target {self.target.name!r} may not read {name} from target {owner.name!r}",
                hint=f"add {owner.name!r} to targets.{self.target.name}.read_from in lakeforge.yaml",
            )
        return owner

    def location(self, name: str | TableName) -> str:
        """The storage URI of a table (whether or not it exists)."""
        table = self.name(name)
        owner = self.owner_of(table, write=False)
        return owner.path(TABLES_DIR, table.schema, table.table)

    def exists(self, name: str | TableName) -> bool:
        table = self.name(name)
        owner = self.owner_of(table, write=False)
        return DeltaTable.is_deltatable(self.location(table), owner.storage_options)

    def delta(
        self,
        name: str | TableName,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        write: bool = False,
    ) -> DeltaTable:
        """The underlying ``deltalake.DeltaTable``, optionally at a version or timestamp."""
        table = self.name(name)
        owner = self.owner_of(table, write=write)
        try:
            dt = DeltaTable(self.location(table), storage_options=owner.storage_options or None)
        except DeltaTableNotFound:
            raise self._not_found(table) from None
        if version is not None or as_of is not None:
            if version is not None and as_of is not None:
                raise ValueError("pass version or as_of, not both")
            target = version if version is not None else _as_datetime(as_of)
            try:
                dt.load_as_version(target)
            except (DeltaError, ValueError, OSError) as exc:
                raise LakeforgeError(
                    f"table {table} has no version at {target!r} (latest is {dt.version()}): {exc}"
                ) from None
        return dt

    def scan(
        self,
        name: str | TableName,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
    ) -> pads.Dataset:
        """An Arrow dataset over the table for engines (DuckDB) to scan with pushdown.

        Strings are exposed as ``string_view``: delta-rs writes some files with view types
        and others without, and pyarrow's filter pushdown fails on a mix unless the
        dataset schema uses the view type.
        """
        table = self.name(name)
        dt = self.delta(table, version=version, as_of=as_of)
        self._notify_read(table, dt)
        return _scan_dataset(dt)

    def parquet_snapshot(
        self,
        name: str | TableName,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
    ) -> tuple[builtins.list[str], pa.Schema] | None:
        """The local Parquet files and schema of a snapshot that plain Parquet readers can scan.

        That is an unpartitioned table on local disk without deletion vectors or column
        mapping; for anything else this returns None and callers use :meth:`scan`.
        """
        table = self.name(name)
        if not self.owner_of(table, write=False).is_local:
            return None
        dt = self.delta(table, version=version, as_of=as_of)
        protocol = dt.protocol()
        if protocol.min_reader_version > 1 or protocol.reader_features:
            return None
        if dt.metadata().partition_columns:
            return None
        files = [uri.removeprefix("file://") for uri in dt.file_uris()]
        if not files:
            return None
        self._notify_read(table, dt)
        return files, pa.schema(dt.schema().to_arrow())

    def schema(self, name: str | TableName) -> pa.Schema:
        """The table's current Arrow schema, with key and comment metadata."""
        return pa.schema(self.delta(name).schema().to_arrow())

    def _not_found(self, table: TableName) -> TableNotFoundError:
        try:
            known = [str(t) for t in self.list(catalog=table.catalog)]
        except LakeforgeError:
            known = []
        close = difflib.get_close_matches(str(table), known, n=3)
        hint = (
            f"did you mean {', '.join(close)}?" if close else "`lakeforge tables list` shows them"
        )
        return TableNotFoundError(f"table {table} does not exist", hint=hint)

    # -- catalog ----------------------------------------------------------------------

    def list(
        self, *, catalog: str | None = None, schema: str | None = None
    ) -> builtins.list[TableName]:
        """Tables in a catalog (default: this target's), optionally in one schema."""
        catalog = (catalog or self.target.catalog).lower()
        owner = self.owner_of(TableName(catalog, "x", "x"), write=False)
        fs, base = pafs.FileSystem.from_uri(owner.path(TABLES_DIR))
        found: builtins.list[TableName] = []
        for schema_dir in _subdirs(fs, base):
            if schema and schema_dir.base_name != schema.lower():
                continue
            for table_dir in _subdirs(fs, schema_dir.path):
                log = fs.get_file_info(f"{table_dir.path}/_delta_log")
                if log.type == pafs.FileType.Directory:
                    found.append(TableName(catalog, schema_dir.base_name, table_dir.base_name))
        return sorted(found)

    def create(
        self,
        name: str | TableName,
        schema: pa.Schema | dict[str, Any],
        *,
        partition_by: Sequence[str] | None = None,
        primary_keys: Sequence[str] | None = None,
        comment: str | None = None,
        column_comments: dict[str, str] | None = None,
        change_data_feed: bool = True,
        if_not_exists: bool = False,
    ) -> TableInfo:
        """Create an empty table. Change data feed is on unless ``change_data_feed=False``."""
        table = self.name(name)
        owner = self.owner_of(table, write=True)
        if self.exists(table):
            if if_not_exists:
                return self.describe(table)
            raise TableExistsError(f"table {table} already exists")
        arrow_schema = schema if isinstance(schema, pa.Schema) else pa.schema(schema)
        arrow_schema = with_key_metadata(
            arrow_schema,
            primary_keys=list(primary_keys or []),
            comments=column_comments,
            table=str(table),
        )
        for column in partition_by or []:
            if arrow_schema.get_field_index(column) < 0:
                raise SchemaMismatchError(
                    f"{table}: partition column {column!r} is not in the schema "
                    f"(columns: {', '.join(arrow_schema.names)})"
                )
        DeltaTable.create(
            self.location(table),
            arrow_schema,
            partition_by=list(partition_by) if partition_by else None,
            name=str(table),
            description=comment,
            configuration=CDF_CONFIG if change_data_feed else None,
            storage_options=owner.storage_options or None,
        )
        return self.describe(table)

    def describe(self, name: str | TableName) -> TableInfo:
        table = self.name(name)
        dt = self.delta(table)
        meta = dt.metadata()
        schema = pa.schema(dt.schema().to_arrow())
        actions = pa.table(dt.get_add_actions(flatten=True))
        return TableInfo(
            name=table,
            location=self.location(table),
            version=dt.version(),
            schema=schema,
            partition_columns=list(meta.partition_columns),
            primary_keys=primary_keys_of(schema),
            comment=meta.description,
            column_comments=comments_of(schema),
            properties=dict(meta.configuration),
            created_at=(
                datetime.fromtimestamp(meta.created_time / 1000, UTC) if meta.created_time else None
            ),
            num_files=actions.num_rows,
            size_bytes=int(sum(actions.column("size_bytes").to_pylist() or [0])),
            num_rows=int(sum(n or 0 for n in actions.column("num_records").to_pylist())),
        )

    def history(
        self, name: str | TableName, *, limit: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Commits, newest first: version, timestamp, operation, parameters and metrics."""
        rows = []
        for commit in self.delta(name).history(limit):
            rows.append(
                {
                    "version": commit.get("version"),
                    "timestamp": datetime.fromtimestamp(commit["timestamp"] / 1000, UTC),
                    "operation": commit.get("operation"),
                    "parameters": commit.get("operationParameters", {}),
                    "metrics": commit.get("operationMetrics", {}),
                    "user_metadata": {
                        k: v for k, v in commit.items() if k.startswith("lakeforge.")
                    },
                }
            )
        return rows

    # -- reads ------------------------------------------------------------------------

    @overload
    def read(
        self,
        name: str | TableName,
        *,
        version: int | None = ...,
        as_of: datetime | str | None = ...,
        columns: builtins.list[str] | None = ...,
        filter: str | None = ...,
        format: Literal["arrow"] = ...,
    ) -> pa.Table: ...
    @overload
    def read(
        self,
        name: str | TableName,
        *,
        version: int | None = ...,
        as_of: datetime | str | None = ...,
        columns: builtins.list[str] | None = ...,
        filter: str | None = ...,
        format: Literal["pandas"],
    ) -> pd.DataFrame: ...
    @overload
    def read(
        self,
        name: str | TableName,
        *,
        version: int | None = ...,
        as_of: datetime | str | None = ...,
        columns: builtins.list[str] | None = ...,
        filter: str | None = ...,
        format: Literal["polars"],
    ) -> pl.DataFrame: ...

    def read(
        self,
        name: str | TableName,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
        columns: builtins.list[str] | None = None,
        filter: str | None = None,
        format: Format = "arrow",
    ) -> pa.Table | pd.DataFrame | pl.DataFrame:
        """Read a table (at a version or timestamp) as Arrow, pandas or Polars.

        ``filter`` is one SQL expression (DuckDB dialect) over the table's columns; it is
        evaluated by DuckDB without any file access, on the columns it and ``columns`` need.
        """
        table = self.name(name)
        dt = self.delta(table, version=version, as_of=as_of)
        names = dt.schema().to_arrow().names
        missing = [c for c in columns or [] if c not in names]
        if missing:
            raise SchemaMismatchError(
                f"{table} has no column(s) {', '.join(missing)} (columns: {', '.join(names)})"
            )
        self._notify_read(table, dt)
        if filter:
            # A plain stream, not the dataset: pyarrow's filter pushdown and its casts to
            # view types fail on files that mix dictionary, plain and view string columns.
            needed = parse_filter(filter, label=str(table)).columns
            projection = None if columns is None else _with_columns(names, columns, needed)
            reader = dt.to_pyarrow_dataset().scanner(columns=projection).to_reader()
            schema = reader.schema
            result = query_dataset(reader, columns=columns, where=filter, label=str(table))
            result = result.cast(pa.schema([schema.field(c) for c in result.column_names]))
        else:
            result = dt.to_pyarrow_dataset().to_table(columns=columns)
        if format == "pandas":
            return result.to_pandas()
        if format == "polars":
            return pl.from_arrow(result)
        return result

    # -- writes -----------------------------------------------------------------------

    def write(
        self,
        name: str | TableName,
        data: Any,
        *,
        mode: WriteMode = "append",
        expectations: Sequence[Expectation] = (),
        schema_evolution: SchemaEvolution | None = None,
        replace_where: str | None = None,
        partition_by: Sequence[str] | None = None,
        primary_keys: Sequence[str] | None = None,
        commit_properties: CommitProperties | None = None,
        quality_log: bool = True,
    ) -> WriteResult:
        """Append or overwrite rows, creating the table on first write.

        Data is checked against the table's schema: narrower types are widened, missing
        nullable columns become null, new columns need ``schema_evolution='merge'``.
        Expectations run first; a failing ``expect_or_fail`` writes nothing. Either the
        whole write commits as one new version or the table stays at its previous version.
        Each write is recorded in ``<catalog>.system.quality_log`` unless ``quality_log``
        is false (for high-frequency machine writes such as inference logs). With other
        writers at work, the result is this write's own commit, and a commit that conflicts
        with theirs is redone on the new snapshot (a stream, which cannot be replayed, fails).
        """
        table = self.name(name)
        owner = self.owner_of(table, write=True)
        arrow = to_arrow(data, what=f"write to {table}")
        dt = self._open(table, owner)
        if dt is not None:
            arrow = self._conform_write(dt, arrow, table, mode, expectations, schema_evolution)
        elif primary_keys:
            arrow = materialize(arrow)
            arrow = arrow.cast(
                with_key_metadata(
                    arrow.schema, primary_keys=list(primary_keys), comments=None, table=str(table)
                )
            )
        write_id = uuid.uuid4().hex
        outcome: QualityOutcome | None = None
        if expectations:
            outcome = apply_expectations(materialize(arrow), list(expectations), table=str(table))
            arrow = outcome.passed
            if outcome.quarantined is not None and outcome.quarantined.num_rows:
                # Quarantine first: if the main write then fails, a retry may repeat these
                # rows (each carries its write id) but a dropped row is never lost.
                self._write_quarantine(table, outcome.quarantined, write_id)
        properties = with_write_id(commit_properties, write_id)
        options: dict[str, Any] = {
            "mode": mode,
            "schema_mode": schema_evolution,
            "predicate": replace_where,
            "storage_options": owner.storage_options or None,
            "commit_properties": properties,
        }
        what = f"write to {table}"

        def commit(attempt: int) -> tuple[DeltaTable, int]:
            """Commit on the current snapshot; a snapshot and a version at or before ours."""
            nonlocal dt, arrow
            if attempt > 1:  # lost a race: start again from the new snapshot
                dt = self._open(table, owner)
                if dt is not None:
                    arrow = self._conform_write(
                        dt, arrow, table, mode, expectations, schema_evolution
                    )
            if dt is None:
                write_deltalake(
                    self.location(table),
                    arrow,
                    **options,
                    partition_by=list(partition_by or []) or None,
                    name=str(table),
                    configuration=CDF_CONFIG,
                )
                return self.delta(table), 0
            check_transactions(dt, properties, what)
            write_deltalake(dt, arrow, **options)
            return dt, dt.version()  # the snapshot right after our own commit

        try:
            snapshot, since = retry_conflicts(
                commit, what=what, replayable=isinstance(arrow, pa.Table)
            )
        except DeltaError as exc:
            raise LakeforgeError(f"{what} failed; the table is unchanged: {exc}") from None
        version, metrics = own_commit(snapshot, write_id, since=since)
        rows_written = int(metrics.get("num_added_rows", 0))
        result = WriteResult(
            table=table,
            version=version,
            operation=mode,
            rows_in=outcome.rows_in if outcome else rows_written,
            rows_written=rows_written,
            rows_dropped=outcome.rows_dropped if outcome else 0,
            rule_failures={r.rule.name: r.failed for r in outcome.results} if outcome else {},
            metrics=metrics,
        )
        if quality_log or outcome is not None:
            self._log_quality(result, outcome, write_id)
        return result

    def _conform_write(
        self,
        dt: DeltaTable,
        arrow: ArrowData,
        table: TableName,
        mode: WriteMode,
        expectations: Sequence[Expectation],
        schema_evolution: SchemaEvolution | None,
    ) -> ArrowData:
        """The data checked against (and widened to) the table's current schema."""
        current = pa.schema(dt.schema().to_arrow())
        if schema_evolution == "overwrite" and mode == "overwrite":
            return materialize(arrow)
        if isinstance(arrow, pa.RecordBatchReader) and not expectations and not schema_evolution:
            return conform_stream(arrow, current, table=str(table))
        return conform(
            materialize(arrow),
            current,
            table=str(table),
            allow_new_columns=schema_evolution == "merge",
        )

    def _open(self, table: TableName, owner: Target) -> DeltaTable | None:
        """The table, or None when it does not exist yet."""
        try:
            return DeltaTable(self.location(table), storage_options=owner.storage_options or None)
        except DeltaTableNotFound:
            return None

    def _write_quarantine(self, table: TableName, rows: pa.Table, write_id: str) -> None:
        quarantine = table.sibling(table.table + QUARANTINE_SUFFIX)
        rows = rows.append_column("_write_id", pa.repeat(pa.scalar(write_id), rows.num_rows))
        rows = rows.append_column(
            "_quarantined_at",
            pa.repeat(pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")), rows.num_rows),
        )

        def append(_attempt: int) -> None:
            exists = self.exists(quarantine)
            write_deltalake(
                self.location(quarantine),
                rows,
                mode="append",
                schema_mode="merge" if exists else None,
                configuration=None if exists else CDF_CONFIG,
                storage_options=self.target.storage_options or None,
            )

        retry_conflicts(append, what=f"write to {quarantine}")

    def _log_quality(
        self, result: WriteResult, outcome: QualityOutcome | None, write_id: str | None = None
    ) -> None:
        rules = outcome.results if outcome else []
        now = datetime.now(UTC)
        write_id = write_id or uuid.uuid4().hex
        base = {
            "write_id": write_id,
            "timestamp": now,
            "table_name": str(result.table),
            "table_version": result.version,
            "operation": result.operation,
            "rows_in": result.rows_in,
            "rows_written": result.rows_written,
            "rows_dropped": result.rows_dropped,
        }
        rows = [
            {
                **base,
                "rule": r.rule.name,
                "expression": r.rule.sql,
                "action": r.rule.action,
                "rows_failed": r.failed,
            }
            for r in rules
        ] or [{**base, "rule": None, "expression": None, "action": None, "rows_failed": None}]
        log = TableName(self.target.catalog, SYSTEM_SCHEMA, QUALITY_LOG)
        data = pa.Table.from_pylist(rows, schema=_QUALITY_LOG_SCHEMA)
        retry_conflicts(
            lambda _attempt: write_deltalake(
                self.location(log),
                data,
                mode="append",
                storage_options=self.target.storage_options or None,
            ),
            what=f"write to {log}",
        )

    def merge(
        self,
        name: str | TableName,
        data: Any,
        *,
        keys: Sequence[str] | None = None,
        delete_missing: bool = False,
        schema_evolution: bool = False,
        update_if: str | None = None,
    ) -> WriteResult:
        """Upsert rows on ``keys`` (default: the table's primary keys).

        Matched rows are updated (only where the SQL predicate ``update_if`` over ``s``,
        the source row, and ``t``, the table's row, holds, when given), new rows inserted;
        with ``delete_missing`` rows absent from ``data`` are deleted. Duplicate keys in
        ``data`` are refused. A merge that conflicts with a concurrent commit is rerun on
        the new snapshot; the result's version is the merge's own commit.
        """
        table = self.name(name)
        dt = self.delta(table, write=True)
        current = pa.schema(dt.schema().to_arrow())
        keys = list(keys or primary_keys_of(current))
        if not keys:
            raise SchemaMismatchError(
                f"merge into {table}: no keys given and the table has no primary keys"
            )
        source = conform(
            materialize(to_arrow(data, what=f"merge into {table}")),
            current,
            table=str(table),
            allow_new_columns=schema_evolution,
        )
        missing = [k for k in keys if k not in source.column_names]
        if missing:
            raise SchemaMismatchError(f"merge into {table}: key column(s) {missing} not in data")
        _check_unique(source, keys, table)
        predicate = " AND ".join(f's."{k}" = t."{k}"' for k in keys)
        write_id = uuid.uuid4().hex

        def execute(attempt: int) -> dict[str, Any]:
            nonlocal source
            if attempt > 1:  # lost a race: merge again into the new snapshot
                dt.update_incremental()
                source = conform(
                    source,
                    pa.schema(dt.schema().to_arrow()),
                    table=str(table),
                    allow_new_columns=schema_evolution,
                )
            merger = (
                dt.merge(
                    source,
                    predicate,
                    source_alias="s",
                    target_alias="t",
                    merge_schema=schema_evolution,
                    commit_properties=with_write_id(None, write_id),
                )
                .when_matched_update_all(predicate=update_if)
                .when_not_matched_insert_all()
            )
            if delete_missing:
                merger = merger.when_not_matched_by_source_delete()
            return merger.execute()

        try:
            metrics = retry_conflicts(execute, what=f"merge into {table}")
        except DeltaError as exc:
            raise LakeforgeError(
                f"merge into {table} failed; the table is unchanged: {exc}"
            ) from None
        result = WriteResult(
            table=table,
            version=dt.version(),  # the snapshot after our own commit
            operation="merge",
            rows_in=source.num_rows,
            rows_written=int(metrics.get("num_target_rows_inserted", 0))
            + int(metrics.get("num_target_rows_updated", 0)),
            metrics=metrics,
        )
        self._log_quality(result, None, write_id)
        return result

    def delete(self, name: str | TableName, predicate: str) -> WriteResult:
        """Delete the rows matching a SQL ``predicate``."""
        table = self.name(name)
        dt = self.delta(table, write=True)

        def delete(attempt: int) -> dict[str, Any]:
            if attempt > 1:  # lost a race: delete again from the new snapshot
                dt.update_incremental()
            return dt.delete(predicate)

        try:
            metrics = retry_conflicts(delete, what=f"delete from {table} where {predicate!r}")
        except DeltaError as exc:
            raise LakeforgeError(f"delete from {table} where {predicate!r} failed: {exc}") from None
        return WriteResult(
            table,
            dt.version(),
            "delete",
            0,
            0,
            rows_dropped=int(metrics.get("num_deleted_rows", 0)),
            metrics=metrics,
        )

    def restore(
        self,
        name: str | TableName,
        *,
        version: int | None = None,
        as_of: datetime | str | None = None,
    ) -> WriteResult:
        """Make the table's content what it was at ``version`` (or time ``as_of``), as a new commit."""
        table = self.name(name)
        if (version is None) == (as_of is None):
            raise ValueError("pass exactly one of version or as_of")
        dt = self.delta(table, write=True)
        latest = dt.version()
        if version is not None and not 0 <= version <= latest:
            raise LakeforgeError(
                f"cannot restore {table} to version {version}: versions are 0..{latest}"
            )
        try:
            metrics = dt.restore(version if version is not None else _as_datetime(as_of))
        except DeltaError as exc:
            raise LakeforgeError(f"restore of {table} failed: {exc}") from None
        return WriteResult(table, dt.version(), "restore", 0, 0, metrics=metrics)

    def optimize(
        self,
        name: str | TableName,
        *,
        zorder_by: Sequence[str] | None = None,
        target_size: int | None = None,
    ) -> dict[str, Any]:
        """Compact small files (or Z-order by columns); returns delta-rs's metrics."""
        dt = self.delta(name, write=True)
        if zorder_by:
            return dt.optimize.z_order(list(zorder_by), target_size=target_size)
        return dt.optimize.compact(target_size=target_size)

    def vacuum(
        self,
        name: str | TableName,
        *,
        retention_hours: int = 168,
        dry_run: bool = False,
        enforce_retention: bool = True,
    ) -> builtins.list[str]:
        """Delete files no longer referenced by versions newer than ``retention_hours``."""
        dt = self.delta(name, write=True)
        try:
            return dt.vacuum(
                retention_hours=retention_hours,
                dry_run=dry_run,
                enforce_retention_duration=enforce_retention,
            )
        except DeltaError as exc:
            raise LakeforgeError(f"vacuum of {self.name(name)} refused: {exc}") from None

    def drop(self, name: str | TableName) -> None:
        """Delete a table of this target with its data and history (there is no undo)."""
        table = self.name(name)
        self.owner_of(table, write=True)
        if not self.exists(table):
            raise self._not_found(table)
        fs, path = pafs.FileSystem.from_uri(self.location(table))
        fs.delete_dir(path)

    def changes(
        self, name: str | TableName, *, starting_version: int = 0, ending_version: int | None = None
    ) -> pa.Table:
        """The change data feed between two versions (``_change_type``, ``_commit_version``...)."""
        dt = self.delta(name)
        reader = dt.load_cdf(starting_version=starting_version, ending_version=ending_version)
        return pa.RecordBatchReader.from_stream(reader).read_all()


def _check_unique(data: pa.Table, keys: list[str], table: TableName) -> None:
    counts = data.group_by(keys).aggregate([([], "count_all")])
    dupes = counts.filter(pa.compute.greater(counts.column("count_all"), 1))
    if dupes.num_rows:
        sample = dupes.slice(0, 3).select(keys).to_pylist()
        raise SchemaMismatchError(
            f"merge into {table}: {dupes.num_rows} key(s) appear more than once in the data, "
            f"e.g. {sample}; deduplicate the source first"
        )


def _with_columns(
    names: builtins.list[str], columns: builtins.list[str], needed: frozenset[str]
) -> builtins.list[str]:
    """``columns`` plus the table columns a filter references (case-insensitively)."""
    return [*columns, *(n for n in names if n.lower() in needed and n not in columns)]


def _scan_dataset(dt: DeltaTable) -> pads.Dataset:
    schema = pa.schema(dt.schema().to_arrow())
    return dt.to_pyarrow_dataset(schema=pa.schema([_view_type(f) for f in schema]))


def _view_type(field: pa.Field) -> pa.Field:
    if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
        return field.with_type(pa.string_view())
    if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
        return field.with_type(pa.binary_view())
    return field


def _subdirs(fs: pafs.FileSystem, base: str) -> list[pafs.FileInfo]:
    info = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return [
        i for i in info if i.type == pafs.FileType.Directory and not i.base_name.startswith(".")
    ]


def _as_datetime(value: datetime | str | None) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise LakeforgeError(
                f"timestamp {value!r} is not ISO 8601 (e.g. 2024-05-01T12:00:00)"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("a timestamp is required")
