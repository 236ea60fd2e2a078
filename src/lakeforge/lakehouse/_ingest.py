"""Incremental, exactly-once ingestion of CSV, JSON-lines and Parquet files into a bronze table.

Each file is recorded in the state store's ``ingest_files`` checkpoint (path, size,
mtime, SHA-256). Files are loaded in batches; a batch is one Delta commit carrying a
Delta *transaction identifier* (``app_id = lakeforge-ingest/<table>``, ``version =
batch``). The checkpoint marks the batch ``pending`` before the commit and ``loaded``
after it, so a crash at any point is repaired on the next run: a pending batch whose
transaction identifier is in the table did commit (mark it loaded); one whose
identifier is not, did not (load it again). No file is loaded twice, none is lost.

A file that cannot be read or does not fit the table is recorded ``failed`` with its
error and never half-loaded; it is not ingested, so every later run tries it again
(and reports it again while it still fails). :meth:`Ingestor.retry` retries the failed
files from their recorded paths, :meth:`Ingestor.forget` removes files from the
checkpoint so they load again, and :meth:`Ingestor.status` shows the checkpoint.

One run per table at a time: a run holds the state store lease ``ingest:<table>``,
renewed by a heartbeat while it lasts. Another run waits for it (or, with
``wait=False``, fails naming the holder's host, pid and lease expiry); a run that died
frees the table when its lease expires. So recovery only ever repairs the batches of
dead runs, never a live run's in-flight batch. Should a run stall past its lease, its
commit is still fenced by the batch's transaction identifier (see ``_commits``).

Schema: inferred from the first batch. Later files are parsed with the table's column
types; a value that does not convert fails its file with a message naming the column
(type conflicts fail rather than rescue). New columns fail the file unless
``evolve_schema=True``. Like Auto Loader, a file already loaded is not reloaded when it
changes later; it is reported as ``changed``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from deltalake import CommitProperties, Transaction
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lakeforge.errors import IngestError, LakeforgeError
from lakeforge.lakehouse._arrow import conform
from lakeforge.lakehouse._commits import TransactionConflictError
from lakeforge.lakehouse._ingest_files import (
    FileFormat,
    SourceFile,
    batches,
    discover,
    file_schema,
    format_of,
    parse,
    sha256,
    source_file,
    strings_for_nulls,
    unsupported_reason,
    with_metadata,
)
from lakeforge.lakehouse._names import TableName
from lakeforge.state import Heartbeat, Lease, StateStore, ingest_files

if TYPE_CHECKING:
    from lakeforge.lakehouse._tables import Lakehouse

DEFAULT_BATCH_BYTES = 256 * 1024 * 1024
DEFAULT_LEASE_S = 60.0


@dataclass(frozen=True)
class IngestProgress:
    """Where a run stands among the files it loads, and what it is doing now."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    activity: str  # the file being loaded, what the run waits for, or "" when idle


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class IngestReport:
    """What one ingestion run did.

    ``failed`` maps each file that failed in this run to its error; ``unsupported``
    maps each file that was not read (not a supported format) to the reason.
    """

    table: TableName
    loaded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    unsupported: dict[str, str] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    recovered: int = 0
    rows: int = 0
    versions: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class CheckpointFile:
    """One file in a table's ingest checkpoint."""

    path: str
    status: str  # loaded | failed | pending (a batch of a run that is still going)
    rows: int | None
    table_version: int | None
    updated_at: datetime
    error: str | None
    change: str | None  # how the file on disk differs from the one recorded, if it does


@dataclass
class IngestStatus:
    """A table's ingest checkpoint: the files loaded, failed and changed after loading."""

    table: TableName
    files: list[CheckpointFile]

    @property
    def loaded(self) -> list[CheckpointFile]:
        return [f for f in self.files if f.status == "loaded"]

    @property
    def failed(self) -> list[CheckpointFile]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def changed(self) -> list[CheckpointFile]:
        """Loaded files that changed on disk since (they are not reloaded)."""
        return [f for f in self.loaded if f.change is not None]


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
        """Ingest the files of ``source`` not loaded yet (new, or failed before) into ``into``.

        One run per table at a time: the run holds the lease ``ingest:<table>`` in the
        state store, renewed by a heartbeat. Another run waits for it (or, with
        ``wait=False``, fails naming the holder); a holder that died stops renewing, and
        its lease expires ``lease_s`` seconds later.
        """
        table = self._writable(into, lease_s)
        with self._holding(table, wait, lease_s, progress) as heartbeat:
            files, unsupported = discover(Path(source), format)
            report = IngestReport(table, unsupported=unsupported)
            known = self._recovered_checkpoint(table, report)
            # A file failed under a forced format that this run does not read is no longer
            # a candidate: it is reported as unsupported, not left failed forever.
            self._delete_rows(
                table, [p for p in unsupported if p in known and known[p].status == "failed"]
            )
            todo: list[SourceFile] = []
            for file in files:
                seen = known.get(str(file.path))
                if seen is None or seen.status == "failed":
                    todo.append(file)  # a failed file was not ingested: try it again
                elif (seen.size, seen.mtime_ns) != (file.size, file.mtime_ns):
                    report.changed.append(str(file.path))
                else:
                    report.skipped += 1
            self._load(todo, table, evolve_schema, batch_bytes, progress, report, heartbeat)
            return report

    def retry(
        self,
        into: str | TableName,
        *,
        format: FileFormat = "auto",
        evolve_schema: bool = False,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        progress: ProgressCallback | None = None,
        wait: bool = True,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> IngestReport:
        """Load again the files recorded as failed for ``into``, from their recorded paths."""
        table = self._writable(into, lease_s)
        with self._holding(table, wait, lease_s, progress) as heartbeat:
            report = IngestReport(table)
            known = self._recovered_checkpoint(table, report)
            todo: list[SourceFile] = []
            for row in known.values():
                if row.status != "failed":
                    continue
                path = Path(row.path)
                kind = format_of(path, format)
                if not path.is_file():
                    report.failed[row.path] = (
                        f"{path} no longer exists; forget it with "
                        f"`lakeforge ingest forget {table} {path}`"
                    )
                elif kind is None:
                    report.unsupported[row.path] = unsupported_reason(path)
                else:
                    todo.append(source_file(path, kind))
            self._load(todo, table, evolve_schema, batch_bytes, progress, report, heartbeat)
            return report

    def forget(
        self,
        into: str | TableName,
        paths: Sequence[str | os.PathLike[str]],
        *,
        wait: bool = True,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> list[str]:
        """Remove files from the checkpoint of ``into`` so that the next run loads them again.

        A path names a recorded file, or a folder for all recorded files below it. Rows a
        forgotten file loaded stay in the table (a reload adds them again). Nothing is
        forgotten when a path is not in the checkpoint. Returns the forgotten paths.
        """
        table = self._writable(into, lease_s)
        if not paths:
            raise IngestError(f"name the files to forget from the ingest checkpoint of {table}")
        with self._holding(table, wait, lease_s, None):
            known = self._recovered_checkpoint(table, IngestReport(table))
            chosen: set[str] = set()
            unknown: list[str] = []
            for given in paths:
                full = str(Path(given).resolve())
                matches = {
                    p for p in known if p in (str(given), full) or p.startswith(full + os.sep)
                }
                chosen |= matches
                if not matches:
                    unknown.append(str(given))
            if unknown:
                raise IngestError(
                    f"not in the ingest checkpoint of {table}: {', '.join(unknown)}; "
                    "nothing was forgotten",
                    hint=f"`lakeforge ingest status {table}` lists the recorded files",
                )
            self._delete_rows(table, sorted(chosen))
            return sorted(chosen)

    def status(self, into: str | TableName) -> IngestStatus:
        """The checkpoint of ``into``, each file compared with the one on disk now."""
        table = self.lakehouse.name(into)
        with self.state.connect_engine().connect() as conn:
            rows = conn.execute(
                select(ingest_files)
                .where(ingest_files.c.table_name == str(table))
                .order_by(ingest_files.c.id)
            ).all()
        files = []
        for row in rows:
            try:
                stat = Path(row.path).stat()
                same = (stat.st_size, stat.st_mtime_ns) == (row.size, row.mtime_ns)
                change = None if same else "modified since it was recorded"
            except FileNotFoundError:
                change = "no longer exists"
            updated = row.updated_at
            files.append(
                CheckpointFile(
                    path=row.path,
                    status=row.status,
                    rows=row.rows,
                    table_version=row.table_version,
                    updated_at=updated if updated.tzinfo else updated.replace(tzinfo=UTC),
                    error=row.error,
                    change=change,
                )
            )
        return IngestStatus(table, files)

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

    def _writable(self, into: str | TableName, lease_s: float) -> TableName:
        table = self.lakehouse.name(into)
        self.lakehouse.owner_of(table, write=True)
        if lease_s <= 0:
            raise IngestError(f"lease_s must be a positive number of seconds, got {lease_s}")
        return table

    @contextmanager
    def _holding(
        self, table: TableName, wait: bool, lease_s: float, progress: ProgressCallback | None
    ) -> Iterator[Heartbeat]:
        """Hold the table's ingest lease (renewed by a heartbeat) while the block runs."""
        lease = Lease(self.state, f"ingest:{table}", duration=timedelta(seconds=lease_s))
        self._take(lease, table, wait, progress)
        with Heartbeat(lease) as heartbeat:
            yield heartbeat

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
                progress(IngestProgress(0, 0, 0, 0, f"waiting for {holder.describe()}"))
            time.sleep(poll)

    def _recovered_checkpoint(self, table: TableName, report: IngestReport) -> dict[str, Any]:
        """The table's checkpoint rows by path, after repairing the batches of dead runs."""
        with self.state.connect_engine().begin() as conn:
            # Under the lease: a pending batch is no live run's, so it is repaired here.
            report.recovered = self._recover(conn, table, _app_id(table))
            return {
                row.path: row
                for row in conn.execute(
                    select(ingest_files).where(ingest_files.c.table_name == str(table))
                )
            }

    def _delete_rows(self, table: TableName, paths: list[str]) -> None:
        if not paths:
            return
        with self.state.engine.begin() as conn:
            conn.execute(
                delete(ingest_files).where(
                    ingest_files.c.table_name == str(table), ingest_files.c.path.in_(paths)
                )
            )

    def _load(
        self,
        todo: list[SourceFile],
        table: TableName,
        evolve_schema: bool,
        batch_bytes: int,
        progress: ProgressCallback | None,
        report: IngestReport,
        heartbeat: Heartbeat,
    ) -> None:
        """Load ``todo`` in batches of about ``batch_bytes``, one commit each."""
        total_bytes = sum(f.size for f in todo)
        files_done = bytes_done = 0
        for batch in batches(todo, batch_bytes):
            if progress:
                progress(
                    IngestProgress(
                        files_done, len(todo), bytes_done, total_bytes, batch[0].path.name
                    )
                )
            self._load_batch(batch, table, _app_id(table), evolve_schema, report, heartbeat)
            files_done += len(batch)
            bytes_done += sum(f.size for f in batch)
            if progress:
                progress(IngestProgress(files_done, len(todo), bytes_done, total_bytes, ""))

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
        files: list[SourceFile],
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
            hashing = {f.path: pool.submit(sha256, f.path) for f in files}
            for file in files:
                try:
                    data = with_metadata(parse(file, file_schema(schema)), file, now)
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
            combined = strings_for_nulls(combined)
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
        files: list[SourceFile],
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


def _short(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines())
    return text[:500] if text else type(exc).__name__


def _app_id(table: TableName) -> str:
    """The Delta transaction application id of the table's ingestion commits."""
    return f"lakeforge-ingest/{table}"
