"""The catalog of a target: table names, permissions, locations, snapshots, creation, history."""

from __future__ import annotations

import builtins
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from lakeforge.errors import (
    LakeforgeError,
    SchemaMismatchError,
    TableExistsError,
    TableNotFoundError,
)
from lakeforge.lakehouse._arrow import (
    comments_of,
    primary_keys_of,
    with_key_metadata,
)
from lakeforge.lakehouse._locations import TableLocations
from lakeforge.lakehouse._names import TableName
from lakeforge.project import Project, Target

if TYPE_CHECKING:
    import pyarrow.dataset as pads

CDF_CONFIG = {"delta.enableChangeDataFeed": "true"}

ReadListener = Callable[[TableName, DeltaTable], None]


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


class Catalog(TableLocations):
    """Tables of one target, and read access to the targets its ``read_from`` names."""

    def __init__(self, project: Project, target: Target) -> None:
        super().__init__(project, target)
        #: Called with every table snapshot read for data (lineage for training runs).
        self.read_listeners: builtins.list[ReadListener] = []

    def _notify_read(self, table: TableName, dt: DeltaTable) -> None:
        for listener in self.read_listeners:
            listener(table, dt)

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
            target = version if version is not None else as_datetime(as_of)
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


def _scan_dataset(dt: DeltaTable) -> pads.Dataset:
    schema = pa.schema(dt.schema().to_arrow())
    return dt.to_pyarrow_dataset(schema=pa.schema([_view_type(f) for f in schema]))


def _view_type(field: pa.Field) -> pa.Field:
    if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
        return field.with_type(pa.string_view())
    if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
        return field.with_type(pa.binary_view())
    return field


def as_datetime(value: datetime | str | None) -> datetime:
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
