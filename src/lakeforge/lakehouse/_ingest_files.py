"""The files an ingestion reads: discovery, formats, parsing, hashing and row metadata."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from lakeforge.errors import IngestError

FileFormat = Literal["auto", "csv", "json", "parquet"]
FORMATS: tuple[FileFormat, ...] = ("auto", "csv", "json", "parquet")
SOURCE_FILE_COLUMN = "_ingest_file"
INGEST_TIME_COLUMN = "_ingest_time"
SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json.gz": "json",
    ".parquet": "parquet",
}


@dataclass
class SourceFile:
    """A file to load, as seen on disk now."""

    path: Path
    size: int
    mtime_ns: int
    fmt: str


def format_of(path: Path, forced: FileFormat) -> str | None:
    """The format to read ``path`` with: the forced one, else its suffix's (None: unsupported)."""
    if forced != "auto":
        return forced
    name = path.name.lower()
    for suffix, fmt in SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def unsupported_reason(path: Path) -> str:
    """Why ``path`` is not read in ``auto`` format, and what is allowed instead."""
    suffix = "".join(path.suffixes[-2:]).lower() or "no suffix"
    return (
        f"unsupported file type ({suffix}); supported: {', '.join(SUFFIXES)}, "
        "or force a format with --format csv|json|parquet"
    )


def source_file(path: Path, fmt: str) -> SourceFile:
    stat = path.stat()
    return SourceFile(path.resolve(), stat.st_size, stat.st_mtime_ns, fmt)


def discover(source: Path, fmt: FileFormat) -> tuple[list[SourceFile], dict[str, str]]:
    """The loadable files under ``source`` and the unsupported ones, each with its reason.

    In a folder, files whose path (below the folder) has a part starting with ``.`` or
    ``_`` are markers (``_SUCCESS``, ``.DS_Store``) and ignored. A file named as the
    source is always read, and an unsupported one is an error.
    """
    if not source.exists():
        raise IngestError(f"ingest source {source} does not exist")
    if source.is_file():
        kind = format_of(source, fmt)
        if kind is None:
            raise IngestError(f"cannot ingest {source}: {unsupported_reason(source)}")
        return [source_file(source, kind)], {}
    files: list[SourceFile] = []
    unsupported: dict[str, str] = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        if any(part.startswith((".", "_")) for part in path.relative_to(source).parts):
            continue
        kind = format_of(path, fmt)
        if kind is None:
            unsupported[str(path.resolve())] = unsupported_reason(path)
        else:
            files.append(source_file(path, kind))
    return files, unsupported


def parse(file: SourceFile, table_schema: pa.Schema | None) -> pa.Table:
    """Read one whole file (compression from its suffix), with the table's types if any."""
    path = str(file.path)
    if file.fmt == "csv":
        types = {f.name: f.type for f in table_schema} if table_schema is not None else None
        options = pacsv.ParseOptions(delimiter="\t" if path.lower().endswith(".tsv") else ",")
        convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        return pacsv.read_csv(path, parse_options=options, convert_options=convert)
    if file.fmt == "json":
        json_options = (
            pajson.ParseOptions(explicit_schema=table_schema, unexpected_field_behavior="infer")
            if table_schema is not None
            else None
        )
        return pajson.read_json(path, parse_options=json_options)
    return pq.read_table(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def batches(files: list[SourceFile], batch_bytes: int) -> Iterator[list[SourceFile]]:
    """Consecutive groups of files of about ``batch_bytes`` (at least one file each)."""
    batch: list[SourceFile] = []
    size = 0
    for file in files:
        if batch and size + file.size > batch_bytes:
            yield batch
            batch, size = [], 0
        batch.append(file)
        size += file.size
    if batch:
        yield batch


def file_schema(schema: pa.Schema | None) -> pa.Schema | None:
    """The table's schema without the columns ingestion adds."""
    if schema is None:
        return None
    keep = [f for f in schema if f.name not in (SOURCE_FILE_COLUMN, INGEST_TIME_COLUMN)]
    return pa.schema(keep)


def with_metadata(data: pa.Table, file: SourceFile, now: datetime) -> pa.Table:
    """``data`` with the source file and ingestion time of every row."""
    rows = data.num_rows
    source = pa.DictionaryArray.from_arrays(
        pa.repeat(pa.scalar(0, pa.int32()), rows), pa.array([str(file.path)])
    )
    data = data.append_column(SOURCE_FILE_COLUMN, source)
    return data.append_column(
        INGEST_TIME_COLUMN, pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), rows)
    )


def strings_for_nulls(data: pa.Table) -> pa.Table:
    """Columns that were empty in every first file become strings, not the null type."""
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in data.schema]
    return data.cast(pa.schema(fields))
