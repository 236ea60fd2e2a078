"""The lakehouse of a target: its catalog, reads, writes and maintenance behind one facade."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, overload

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake.exceptions import DeltaError

from lakeforge.errors import (
    LakeforgeError,
    SchemaMismatchError,
)
from lakeforge.lakehouse._catalog import Catalog, TableInfo, as_datetime
from lakeforge.lakehouse._locations import TABLES_DIR as TABLES_DIR
from lakeforge.lakehouse._names import TableName
from lakeforge.lakehouse._writes import SYSTEM_SCHEMA as SYSTEM_SCHEMA
from lakeforge.lakehouse._writes import TableWriter, WriteMode, WriteResult

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl

Format = Literal["arrow", "pandas", "polars"]

__all__ = [
    "SYSTEM_SCHEMA",
    "TABLES_DIR",
    "Catalog",
    "Lakehouse",
    "TableInfo",
    "WriteMode",
    "WriteResult",
]


class Lakehouse(TableWriter):
    """Tables of one target, and read access to the targets its ``read_from`` names.

    The catalog (:class:`Catalog`), writes (:class:`TableWriter`), reads and maintenance.
    """

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
            from lakeforge.lakehouse._sql import parse_filter, query_dataset

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
            import polars as pl

            return pl.from_arrow(result)
        return result

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
            metrics = dt.restore(version if version is not None else as_datetime(as_of))
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


def _with_columns(
    names: builtins.list[str], columns: builtins.list[str], needed: frozenset[str]
) -> builtins.list[str]:
    """``columns`` plus the table columns a filter references (case-insensitively)."""
    return [*columns, *(n for n in names if n.lower() in needed and n not in columns)]
