"""Incremental, exactly-once ingestion of CSV, JSON-lines and Parquet files into a bronze table.

Each file is recorded in the state store's ``ingest_files`` checkpoint (path, size,
mtime, SHA-256). Files are loaded in batches; a batch is one Delta commit carrying a
Delta *transaction identifier* (``app_id = lakeforge-ingest/<table>``, ``version =
batch``). The checkpoint marks the batch ``pending`` before the commit and ``loaded``
after it, so a crash at any point is repaired on the next run: a pending batch whose
transaction identifier is in the table did commit (mark it loaded); one whose
identifier is not, did not (load it again). No file is loaded twice, none is lost.

One run per table at a time: a run holds the state store lease ``ingest:<table>``,
renewed by a heartbeat while it lasts. Another run waits for it (or, with
``wait=False``, fails naming the holder's host, pid and lease expiry); a run that died
frees the table when its lease expires. So recovery only ever repairs the batches of
dead runs, never a live run's in-flight batch. Should a run stall past its lease, its
commit is still fenced by the batch's transaction identifier (see ``_commits``).

Schema: inferred from the first batch. Later files are parsed with the table's column
types; a value that does not convert fails its file with a message naming the column,
and the file is never half-loaded (type conflicts fail rather than rescue). New columns
fail the file unless ``evolve_schema=True``. Like Auto Loader, a file already loaded is
not reloaded when it changes later; it is reported as ``changed``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from deltalake import CommitProperties, Transaction
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lakeforge.errors import IngestError, LakeforgeError
from lakeforge.lakehouse._arrow import conform
from lakeforge.lakehouse._commits import TransactionConflictError
from lakeforge.lakehouse._names import TableName
from lakeforge.state import Heartbeat, Lease, StateStore, ingest_files

if TYPE_CHECKING:
    from lakeforge.lakehouse._tables import Lakehouse

FileFormat = Literal["auto", "csv", "json", "parquet"]
SOURCE_FILE_COLUMN = "_ingest_file"
INGEST_TIME_COLUMN = "_ingest_time"
_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json.gz": "json",
    ".parquet": "parquet",
}
DEFAULT_BATCH_BYTES = 256 * 1024 * 1024
DEFAULT_LEASE_S = 60.0
ProgressCallback = Callable[[int, int, str], None]


@dataclass
class IngestReport:
    """What one ingestion run did."""

    table: TableName
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    changed: list[str] = field(default_factory=list)
    recovered: int = 0
    rows: int = 0
    versions: list[int] = field(default_factory=list)


@dataclass
class _File:
    path: Path
    size: int
    mtime_ns: int
    fmt: str


def _format_of(path: Path, forced: FileFormat) -> str | None:
    if forced != "auto":
        return forced
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def _discover(source: Path, fmt: FileFormat) -> list[_File]:
    if not source.exists():
        raise IngestError(f"ingest source {source} does not exist")
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    files = []
    for path in paths:
        if any(part.startswith((".", "_")) for part in path.relative_to(source.parent).parts):
            continue
        kind = _format_of(path, fmt)
        if kind is None:
            continue
        stat = path.stat()
        files.append(_File(path.resolve(), stat.st_size, stat.st_mtime_ns, kind))
    return files


def _parse(file: _File, table_schema: pa.Schema | None) -> pa.Table:
    """Read one whole file (compression from its suffix), with the table's types if any."""
    path = str(file.path)
    if file.fmt == "csv":
        types = {f.name: f.type for f in table_schema} if table_schema is not None else None
        parse = pacsv.ParseOptions(delimiter="\t" if path.lower().endswith(".tsv") else ",")
        convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
        return pacsv.read_csv(path, parse_options=parse, convert_options=convert)
    if file.fmt == "json":
        options = (
            pajson.ParseOptions(explicit_schema=table_schema, unexpected_field_behavior="infer")
            if table_schema is not None
            else None
        )
        return pajson.read_json(path, parse_options=options)
    return pq.read_table(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _batches(files: list[_File], batch_bytes: int) -> Iterator[list[_File]]:
    batch: list[_File] = []
    size = 0
    for file in files:
        if batch and size + file.size > batch_bytes:
            yield batch
            batch, size = [], 0
        batch.append(file)
        size += file.size
    if batch:
        yield batch


class Ingestor:
    """Loads new files from a folder into one lakehouse table, exactly once each."""

    def __init__(self, lakehouse: Lakehouse, state: StateStore) -> None:
        self.lakehouse = lakehouse
        self.state = state

    def run(
        self,
        source: str | os.PathLike[str],
        into: str | TableName,
        *,
        format: FileFormat = "auto",
        evolve_schema: bool = False,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        progress: ProgressCallback | None = None,
        wait: bool = True,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> IngestReport:
        """Ingest the new files of ``source`` into ``into``.

        One run per table at a time: the run holds the lease ``ingest:<table>`` in the
        state store, renewed by a heartbeat. Another run waits for it (or, with
        ``wait=False``, fails naming the holder); a holder that died stops renewing, and
        its lease expires ``lease_s`` seconds later.
        """
        table = self.lakehouse.name(into)
        self.lakehouse.owner_of(table, write=True)
        if lease_s <= 0:
            raise IngestError(f"lease_s must be a positive number of seconds, got {lease_s}")
        source = Path(source)
        lease = Lease(self.state, f"ingest:{table}", duration=timedelta(seconds=lease_s))
        self._take(lease, table, wait, progress)
        with Heartbeat(lease) as heartbeat:
            return self._run(source, table, format, evolve_schema, batch_bytes, progress, heartbeat)

    def _take(
        self, lease: Lease, table: TableName, wait: bool, progress: ProgressCallback | None
    ) -> None:
        """Take the table's ingest lease, waiting while a live run holds it (if ``wait``)."""
        poll = min(1.0, lease.duration.total_seconds() / 4)
        while not lease.acquire():
            holder = lease.holder()
            if holder is None:  # released or expired in between: try again at once
                continue
            if not wait:
                raise IngestError(
                    f"another ingestion into {table} is running: {holder.describe()}; "
                    "one ingestion per table runs at a time",
                    hint="wait for it to finish, or run without --no-wait (wait=False) to "
                    "queue behind it; a run that died frees the table when its lease expires",
                )
            if progress:
                progress(0, 0, f"waiting for {holder.describe()}")
            time.sleep(poll)

    def _run(
        self,
        source: Path,
        table: TableName,
        format: FileFormat,
        evolve_schema: bool,
        batch_bytes: int,
        progress: ProgressCallback | None,
        heartbeat: Heartbeat,
    ) -> IngestReport:
        engine = self.state.connect_engine()
        report = IngestReport(table)
        app_id = f"lakeforge-ingest/{table}"
        with engine.begin() as conn:
            # Under the lease: a pending batch is no live run's, so it is repaired here.
            report.recovered = self._recover(conn, table, app_id)
            known = {
                row.path: row
                for row in conn.execute(
                    select(ingest_files).where(ingest_files.c.table_name == str(table))
                )
            }
        todo: list[_File] = []
        for file in _discover(source, format):
            seen = known.get(str(file.path))
            if seen is None or (
                seen.status == "failed" and (seen.size, seen.mtime_ns) != (file.size, file.mtime_ns)
            ):
                todo.append(file)
            elif seen.status == "loaded" and (seen.size, seen.mtime_ns) != (
                file.size,
                file.mtime_ns,
            ):
                report.changed.append(str(file.path))
            else:
                report.skipped += 1
        done = 0
        for batch in _batches(todo, batch_bytes):
            if progress:
                progress(done, len(todo), batch[0].path.name)
            self._load_batch(batch, table, app_id, evolve_schema, report, heartbeat)
            done += len(batch)
            if progress:
                progress(done, len(todo), "")
        return report

    def _recover(self, conn: Connection, table: TableName, app_id: str) -> int:
        pending = (
            conn.execute(
                select(ingest_files.c.batch)
                .distinct()
                .where(ingest_files.c.table_name == str(table), ingest_files.c.status == "pending")
            )
            .scalars()
            .all()
        )
        if not pending:
            return 0
        committed = (
            self.lakehouse.delta(table).transaction_version(app_id)
            if self.lakehouse.exists(table)
            else None
        )
        for batch in pending:
            where = (
                (ingest_files.c.table_name == str(table))
                & (ingest_files.c.batch == batch)
                & (ingest_files.c.status == "pending")
            )
            if committed is not None and committed >= batch:
                conn.execute(
                    update(ingest_files)
                    .where(where)
                    .values(status="loaded", updated_at=datetime.now(UTC))
                )
            else:
                conn.execute(delete(ingest_files).where(where))
        return len(pending)

    def _next_batch(self, conn: Connection, table: TableName, app_id: str) -> int:
        last = conn.execute(
            select(func.max(ingest_files.c.batch)).where(ingest_files.c.table_name == str(table))
        ).scalar()
        committed = (
            self.lakehouse.delta(table).transaction_version(app_id)
            if self.lakehouse.exists(table)
            else None
        )
        return max(last or 0, committed or 0) + 1

    def _load_batch(
        self,
        files: list[_File],
        table: TableName,
        app_id: str,
        evolve_schema: bool,
        report: IngestReport,
        heartbeat: Heartbeat,
    ) -> None:
        now = datetime.now(UTC)
        schema = self.lakehouse.schema(table) if self.lakehouse.exists(table) else None
        parsed: dict[Path, pa.Table] = {}
        failed: dict[Path, str] = {}
        # Hash in a thread while pyarrow parses: both release the GIL.
        with ThreadPoolExecutor(max_workers=1) as pool:
            hashing = {f.path: pool.submit(_sha256, f.path) for f in files}
            for file in files:
                try:
                    data = _with_metadata(_parse(file, _file_schema(schema)), file, now)
                    if schema is not None:
                        data = conform(
                            data, schema, table=str(table), allow_new_columns=evolve_schema
                        )
                    parsed[file.path] = data
                except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, LakeforgeError) as exc:
                    failed[file.path] = _short(exc)
            digests = {path: future.result() for path, future in hashing.items()}
        combined: pa.Table | None = None
        if parsed:
            try:
                combined = pa.concat_tables(list(parsed.values()), promote_options="permissive")
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                failed |= {path: f"files in one batch disagree: {_short(exc)}" for path in parsed}
                parsed = {}
        _still_held(heartbeat, table)
        batch = self._claim(files, table, app_id, digests, failed, now)
        report.failed |= {str(path): error for path, error in failed.items()}
        if combined is None or not parsed:
            return
        if schema is None:
            combined = _strings_for_nulls(combined)
        _still_held(heartbeat, table)
        try:
            # Should this run have lost its lease anyway (a stall longer than the lease),
            # the batch's transaction id fences the commit: the write is refused when
            # another run committed this batch number, or commits one concurrently.
            result = self.lakehouse.write(
                table,
                combined,
                mode="append",
                schema_evolution="merge" if evolve_schema else None,
                commit_properties=CommitProperties(app_transactions=[Transaction(app_id, batch)]),
            )
        except TransactionConflictError as exc:
            raise IngestError(
                f"ingestion into {table} stopped: another run took over the table while this "
                f"one was stalled, and its batch {batch} was not committed ({exc.message})",
                hint="rerun to load the files still missing",
            ) from None
        with self.state.engine.begin() as conn:
            for path, data in parsed.items():
                conn.execute(
                    update(ingest_files)
                    .where(
                        ingest_files.c.table_name == str(table),
                        ingest_files.c.path == str(path),
                    )
                    .values(
                        status="loaded",
                        table_version=result.version,
                        rows=data.num_rows,
                        updated_at=datetime.now(UTC),
                    )
                )
        report.loaded += [str(path) for path in parsed]
        report.rows += combined.num_rows
        if result.version is not None:
            report.versions.append(result.version)

    def _claim(
        self,
        files: list[_File],
        table: TableName,
        app_id: str,
        digests: dict[Path, str],
        failed: dict[Path, str],
        now: datetime,
    ) -> int:
        """Record the batch's files: ``pending`` under a new batch number, or ``failed``."""
        try:
            with self.state.engine.begin() as conn:
                batch = self._next_batch(conn, table, app_id)
                conn.execute(
                    delete(ingest_files).where(
                        ingest_files.c.table_name == str(table),
                        ingest_files.c.status == "failed",
                        ingest_files.c.path.in_([str(f.path) for f in files]),
                    )
                )
                conn.execute(
                    insert(ingest_files),
                    [
                        {
                            "table_name": str(table),
                            "path": str(f.path),
                            "size": f.size,
                            "mtime_ns": f.mtime_ns,
                            "content_hash": digests[f.path],
                            "status": "failed" if f.path in failed else "pending",
                            "batch": None if f.path in failed else batch,
                            "error": failed.get(f.path),
                            "updated_at": now,
                        }
                        for f in files
                    ],
                )
        except IntegrityError:
            raise IngestError(
                f"another ingestion into {table} claimed some of these files first; "
                "rerun when it has finished"
            ) from None
        return batch

    def checkpoint(self, into: str | TableName) -> list[dict[str, object]]:
        """The checkpoint rows of a table: one per file seen, with status and error."""
        table = self.lakehouse.name(into)
        with self.state.connect_engine().connect() as conn:
            rows = conn.execute(
                select(ingest_files)
                .where(ingest_files.c.table_name == str(table))
                .order_by(ingest_files.c.id)
            )
            return [dict(row._mapping) for row in rows]


def _still_held(heartbeat: Heartbeat, table: TableName) -> None:
    """Renew the run's lease now; fail when it expired and may have been taken over."""
    if heartbeat.lost.is_set() or not heartbeat.lease.renew():
        heartbeat.lost.set()
        raise IngestError(
            f"ingestion into {table} stopped: this run lost its lease {heartbeat.lease.name!r} "
            f"(it stalled for longer than {heartbeat.lease.duration.total_seconds():g}s) and "
            "another run may have taken over; the batches committed so far are recorded",
            hint="rerun to load the files still missing; raise lease_s (--lease-seconds) if "
            "this machine stalls that long",
        )


def _file_schema(schema: pa.Schema | None) -> pa.Schema | None:
    if schema is None:
        return None
    keep = [f for f in schema if f.name not in (SOURCE_FILE_COLUMN, INGEST_TIME_COLUMN)]
    return pa.schema(keep)


def _with_metadata(data: pa.Table, file: _File, now: datetime) -> pa.Table:
    rows = data.num_rows
    source = pa.DictionaryArray.from_arrays(
        pa.repeat(pa.scalar(0, pa.int32()), rows), pa.array([str(file.path)])
    )
    data = data.append_column(SOURCE_FILE_COLUMN, source)
    return data.append_column(
        INGEST_TIME_COLUMN, pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), rows)
    )


def _strings_for_nulls(data: pa.Table) -> pa.Table:
    """Columns that were empty in every first file become strings, not the null type."""
    fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in data.schema]
    return data.cast(pa.schema(fields))


def _short(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return text[:500] if text else type(exc).__name__
