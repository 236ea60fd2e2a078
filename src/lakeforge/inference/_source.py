"""What scoring reads: a table snapshot, a SQL result or in-memory data, cut into units
and deterministic chunks.

A unit is what one worker scores at a time. For a local, unpartitioned table snapshot it
is one Parquet row group, named by file and index (the worker reads it itself, only the
columns scoring needs); for anything else it is Arrow data the driver read. Chunks group
consecutive units, in snapshot order, up to about ``chunk_rows`` rows: for one table
version they are always the same, so chunk numbers can be application transaction
versions.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

# A SQL result up to this size is counted before scoring (small inputs score in-process).
_COUNT_UP_TO = 100_000
# Rows a worker scores at once: large enough that per-call costs vanish, small enough
# that a worker's memory does not grow with the table's row groups.
UNIT_ROWS = 131_072
_STREAM_BUFFER = 1 << 22  # bytes read at a time when streaming a row group


@dataclass(frozen=True)
class FileUnit:
    """Rows of one row group of a snapshot's Parquet file (all of it, or the ``start``-th
    slice of ``rows`` rows when row groups are larger than chunks), read by the worker
    that scores them."""

    path: str
    row_group: int
    start: int  # a multiple of rows: the slice's first row in the row group
    rows: int
    whole: bool  # the unit is the whole row group
    schema: pa.Schema  # the snapshot's schema
    columns: tuple[str, ...] | None = None  # the columns read (None: all)

    @property
    def wanted(self) -> pa.Schema:
        """The schema of what :meth:`read` returns."""
        return self.schema if self.columns is None else _project(self.schema, self.columns)

    def read(self) -> pa.Table:
        """The unit's rows, as the snapshot's types (files may hold narrower ones).

        A slice decodes the rows of its row group before it too: read slices in order
        with a :class:`UnitReader`, which decodes each row group once.
        """
        wanted = self.wanted
        file = pq.ParquetFile(self.path)
        if self.whole:
            data = file.read_row_group(self.row_group, columns=wanted.names)
        else:
            data = _RowStream(self).take(self)
        return data.cast(wanted) if data.schema != wanted else data

    def with_columns(self, columns: Sequence[str]) -> FileUnit:
        return FileUnit(
            self.path,
            self.row_group,
            self.start,
            self.rows,
            self.whole,
            self.schema,
            tuple(columns),
        )


@dataclass(frozen=True)
class DataUnit:
    """Rows the driver already read (SQL results, in-memory data, remote snapshots)."""

    data: pa.Table
    columns: tuple[str, ...] | None = None

    @property
    def rows(self) -> int:
        return self.data.num_rows

    def read(self) -> pa.Table:
        return self.data if self.columns is None else self.data.select(list(self.columns))

    def with_columns(self, columns: Sequence[str]) -> DataUnit:
        return DataUnit(self.data, tuple(columns))


Unit = FileUnit | DataUnit


@dataclass
class Chunk:
    """Units committed together, numbered 1, 2, ... in input order."""

    number: int
    units: list[Unit] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(unit.rows for unit in self.units)


@dataclass
class Source:
    """The input of one scoring run: its schema and its chunks (possibly a stream)."""

    schema: pa.Schema
    chunks: Iterator[Chunk]
    label: str  # the table name, 'sql' or 'data'
    version: int | None = None  # the table version read (None for SQL or in-memory input)
    primary_keys: list[str] = field(default_factory=list)
    rows: int | None = None  # known up front for table snapshots


def table_source(ws: Workspace, table: str, *, version: int | None, chunk_rows: int) -> Source:
    """The snapshot of ``table`` at ``version`` (default: the current one)."""
    from lakeforge.lakehouse import primary_keys_of

    name = ws.tables.name(table)
    dt = ws.tables.delta(name, version=version)
    pinned = dt.version()
    schema = pa.schema(dt.schema().to_arrow())
    keys = primary_keys_of(schema)
    snapshot = ws.tables.parquet_snapshot(name, version=pinned)
    if snapshot is not None:
        files, schema = snapshot
        units = _row_groups(files, schema, chunk_rows)
        rows = sum(unit.rows for unit in units)
        return Source(schema, _group(iter(units), chunk_rows), str(name), pinned, keys, rows)
    # Remote, partitioned or with reader features: the driver streams the snapshot.
    dataset = dt.to_pyarrow_dataset()
    batches = dataset.to_batches(batch_size=min(chunk_rows, UNIT_ROWS))
    rows = dataset.count_rows()
    return Source(
        dataset.schema,
        _group(_data_units(batches, chunk_rows), chunk_rows),
        str(name),
        pinned,
        keys,
        rows,
    )


def sql_source(
    ws: Workspace, query: str, *, chunk_rows: int, count_up_to: int = _COUNT_UP_TO
) -> Source:
    """The result of a read-only SQL query over the lakehouse, streamed from DuckDB.

    Up to ``count_up_to`` rows are read ahead, so the size of a small result is known.
    """
    from lakeforge.lakehouse import SqlSession

    reader = SqlSession(ws.tables).stream(query, batch_rows=min(chunk_rows, UNIT_ROWS))
    batches = iter(reader)
    ahead: list[pa.RecordBatch] = []
    read = 0
    for batch in batches:
        ahead.append(batch)
        read += batch.num_rows
        if read > count_up_to:
            break
    units = _data_units(itertools.chain(ahead, batches), chunk_rows)
    rows = read if read <= count_up_to else None  # a larger result is counted as it streams
    return Source(reader.schema, _group(units, chunk_rows), "sql", rows=rows)


def data_source(data: Any, *, chunk_rows: int) -> Source:
    """In-memory data: anything :func:`lakeforge.lakehouse.to_arrow` takes (a stream too)."""
    from lakeforge.lakehouse import to_arrow

    arrow = to_arrow(data, what="scoring input")
    if isinstance(arrow, pa.Table):
        batches: Iterator[pa.RecordBatch] = iter(arrow.to_batches(max_chunksize=chunk_rows))
        rows: int | None = arrow.num_rows
    else:
        batches, rows = iter(arrow), None
    units = _data_units(batches, chunk_rows)
    return Source(arrow.schema, _group(units, chunk_rows), "data", rows=rows)


def _row_groups(files: list[str], schema: pa.Schema, chunk_rows: int) -> list[Unit]:
    """A unit per row group, or per slice of one larger than ``UNIT_ROWS`` (or than a
    chunk): every worker gets work, and holds one bounded unit at a time."""
    units: list[Unit] = []
    size = min(chunk_rows, UNIT_ROWS)
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        for index in range(metadata.num_row_groups):
            total = metadata.row_group(index).num_rows
            for start in range(0, total, size):
                rows = min(size, total - start)
                units.append(FileUnit(path, index, start, rows, rows == total, schema))
    return units


class UnitReader:
    """Reads units in input order, each row group sliced into several units decoded once,
    front to back, and streamed (a page buffer, not the whole row group, in memory)."""

    def __init__(self) -> None:
        self._stream: _RowStream | None = None
        self._last: tuple[Unit, pa.Table] | None = None  # the unit read last (read again)

    def read(self, unit: Unit) -> pa.Table:
        """The rows of ``unit``."""
        if self._last is not None and self._last[0] is unit:
            return self._last[1]
        if not isinstance(unit, FileUnit) or unit.whole:
            data = unit.read()
        else:
            stream = self._stream
            if stream is None or not stream.reaches(unit):
                stream = self._stream = _RowStream(unit)
            data = stream.take(unit)
            data = data.cast(unit.wanted) if data.schema != unit.wanted else data
        self._last = (unit, data)
        return data

    def ship(self, unit: Unit) -> Unit:
        """``unit`` for another process: a slice of a larger row group read here (a
        worker reading it would decode the rows before it again), anything else as is."""
        if isinstance(unit, FileUnit) and not unit.whole:
            return DataUnit(self.read(unit))
        return unit


class _RowStream:
    """The rows of one row group, front to back, in batches of a slice's size."""

    def __init__(self, unit: FileUnit) -> None:
        self.key = (unit.path, unit.row_group, unit.wanted.names)
        file = pq.ParquetFile(unit.path, pre_buffer=False, buffer_size=_STREAM_BUFFER)
        self._batches = file.iter_batches(
            batch_size=unit.rows, row_groups=[unit.row_group], columns=unit.wanted.names
        )
        stored = file.schema_arrow
        self._schema = pa.schema([stored.field(name) for name in unit.wanted.names])
        self._carry: pa.RecordBatch | None = None
        self.at = 0  # rows of the row group passed so far

    def reaches(self, unit: FileUnit) -> bool:
        """Whether ``unit`` is in this row group at or after the rows passed so far."""
        return self.key == (unit.path, unit.row_group, unit.wanted.names) and unit.start >= self.at

    def take(self, unit: FileUnit) -> pa.Table:
        """``unit``'s rows (the rows before it, not taken yet, are passed over)."""
        if unit.start > self.at:
            self._next(unit.start - self.at)
        return pa.Table.from_batches(self._next(unit.rows), schema=self._schema)

    def _next(self, rows: int) -> list[pa.RecordBatch]:
        pieces: list[pa.RecordBatch] = []
        need = rows
        while need > 0:
            if self._carry is None:
                self._carry = next(self._batches, None)
                if self._carry is None:
                    break
            piece = self._carry.slice(0, need)
            pieces.append(piece)
            need -= piece.num_rows
            rest = self._carry.slice(piece.num_rows)
            self._carry = rest if rest.num_rows else None
        self.at += rows - need
        return pieces


def _data_units(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[Unit]:
    """Batches gathered into units of up to ``chunk_rows`` rows."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        while batch.num_rows:
            take = batch.slice(0, chunk_rows - size)
            pending.append(take)
            size += take.num_rows
            batch = batch.slice(take.num_rows)
            if size >= chunk_rows:
                yield DataUnit(pa.Table.from_batches(pending))
                pending, size = [], 0
    if size:
        yield DataUnit(pa.Table.from_batches(pending))


def _group(units: Iterator[Unit], chunk_rows: int) -> Iterator[Chunk]:
    """Consecutive units in chunks of about ``chunk_rows`` rows (a larger unit alone)."""
    chunk = Chunk(1)
    for unit in units:
        if chunk.units and chunk.rows + unit.rows > chunk_rows:
            yield chunk
            chunk = Chunk(chunk.number + 1)
        chunk.units.append(unit)
    if chunk.units:
        yield chunk


def _project(schema: pa.Schema, columns: Sequence[str]) -> pa.Schema:
    missing = [c for c in columns if schema.get_field_index(c) < 0]
    if missing:
        raise LakeforgeError(f"columns {missing} are not in the input ({schema.names})")
    return pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
