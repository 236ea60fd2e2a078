"""Durable inference tables: a local spool per worker, flushed to Delta in batches.

Each logged request is one JSON line written to the worker's open spool segment
(``<spool>/<worker>-<seq>.jsonl``) before its response is sent, so a killed process
loses nothing it acknowledged. A flusher thread closes the segment every
``flush_interval_s`` (or ``flush_rows`` records) and appends all closed segments to the
endpoint's Delta table in one commit that carries a Delta transaction id
(``app_id = lakeforge-serving/<worker>``, ``version = <seq>``). A segment is deleted only
after its commit; a segment found again (after a crash between commit and delete) is
recognised by that transaction id and dropped, never written twice. ``recover`` commits
the segments that dead workers left behind.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

log = logging.getLogger("lakeforge.serving")

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("client_request_id", pa.string()),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("status_code", pa.int32(), nullable=False),
        pa.field("execution_time_ms", pa.float64(), nullable=False),
        pa.field("sampling_fraction", pa.float64(), nullable=False),
        pa.field("request", pa.string()),
        pa.field("response", pa.string()),
        pa.field("endpoint_name", pa.string(), nullable=False),
        pa.field("served_entity", pa.string()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("alias", pa.string()),
        pa.field("shadow", pa.bool_(), nullable=False),
    ]
)
_SEGMENT = re.compile(r"^(?P<worker>[0-9a-f]{32})-(?P<seq>\d{10})\.jsonl$")
_APP = "lakeforge-serving/"
Committer = Callable[["Workspace", str, list[Path]], int]
"""Writes closed segments to a table exactly once and deletes them; returns rows written."""


def create_table(ws: Workspace, table: str) -> None:
    """Create the inference table (partitioned by date) if it does not exist."""
    ws.tables.create(
        table,
        SCHEMA,
        partition_by=["date"],
        comment="Inference table: one row per logged serving request",
        if_not_exists=True,
    )


class Spool:
    """The open segment of one worker: append records, rotate closed segments out."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.worker = uuid.uuid4().hex
        self._seq = 0
        self._rows = 0
        self._lock = threading.Lock()
        self._file = self._open()

    def _open(self) -> Any:
        self._seq += 1
        path = self.directory / f"{self.worker}-{self._seq:010d}.jsonl"
        return open(path, "ab", buffering=0)  # noqa: SIM115 - closed by rotate/close

    def append(self, record: dict[str, Any]) -> int:
        """Write one record (one ``write`` call: whole lines only); return the segment's rows."""
        line = orjson.dumps(record) + b"\n"
        with self._lock:
            self._file.write(line)
            self._rows += 1
            return self._rows

    def rotate(self) -> bool:
        """Close the open segment (if it has rows) and start the next; True if one closed."""
        with self._lock:
            if self._rows == 0:
                return False
            self._file.close()
            self._file = self._open()
            self._rows = 0
            return True

    def close(self) -> None:
        with self._lock:
            self._file.close()
            if self._rows == 0:
                Path(self._file.name).unlink(missing_ok=True)

    def closed_segments(self) -> list[Path]:
        """This worker's segments that are no longer written to, oldest first."""
        with self._lock:
            current = Path(self._file.name).name
        return [p for p in segments(self.directory, self.worker) if p.name != current]


def segments(directory: Path, worker: str | None = None) -> list[Path]:
    """Spool segments in ``directory`` (of one worker, or all), oldest first per worker."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _SEGMENT.match(path.name)
        if match and (worker is None or match["worker"] == worker):
            found.append(path)
    return sorted(found)


def _read(path: Path) -> list[dict[str, Any]]:
    """A segment's records; a torn last line (a kill mid-write) was never acknowledged."""
    records = []
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.warning("%s: dropping a torn line (never acknowledged)", path.name)
    return records


def pending(
    dt: DeltaTable, paths: list[Path], app: str = _APP
) -> tuple[list[Path], list[Path], dict[str, int]]:
    """Split ``paths`` into (not yet committed, committed) by the table's transaction ids
    (``app`` + worker); also the newest pending segment number per worker."""
    newest: dict[str, int] = defaultdict(int)
    todo: list[Path] = []
    done: list[Path] = []
    for path in paths:
        match = _SEGMENT.match(path.name)
        assert match is not None
        worker, seq = match["worker"], int(match["seq"])
        version = dt.transaction_version(app + worker)
        if version is not None and seq <= version:
            done.append(path)
        else:
            todo.append(path)
            newest[worker] = max(newest[worker], seq)
    return todo, done, newest


def transactions(app: str, newest: dict[str, int]) -> CommitProperties:
    """The commit properties that mark segments up to ``newest`` (per worker) as written."""
    return CommitProperties(
        app_transactions=[Transaction(app + w, s) for w, s in sorted(newest.items())]
    )


def read_all(paths: list[Path]) -> list[dict[str, Any]]:
    """The records of ``paths``, in order."""
    return [record for path in paths for record in _read(path)]


def commit(
    ws: Workspace,
    table: str,
    paths: list[Path],
    *,
    schema: pa.Schema = SCHEMA,
    app: str = _APP,
) -> int:
    """Append ``paths`` to ``table`` exactly once, then delete them; return rows written."""
    if not paths:
        return 0
    todo, done, newest = pending(ws.tables.delta(table), paths, app)
    for path in done:
        path.unlink(missing_ok=True)  # committed before a crash; never twice
    records = read_all(todo)
    if records:
        ws.tables.write(
            table,
            to_table(records, schema),
            mode="append",
            quality_log=False,  # one commit per flush, not two
            commit_properties=transactions(app, newest),
        )
    for path in todo:
        path.unlink(missing_ok=True)
    return len(records)


def to_table(records: list[dict[str, Any]], schema: pa.Schema = SCHEMA) -> pa.Table:
    """``records`` as rows of ``schema``, each dated by its ``timestamp_ms``."""
    for record in records:
        record["date"] = datetime.fromtimestamp(record["timestamp_ms"] / 1000, UTC).date()
    return pa.Table.from_pylist(records, schema=schema)


def recover(ws: Workspace, table: str, directory: Path, committer: Committer | None = None) -> int:
    """Commit what workers of an earlier run left in ``directory``; return rows written."""
    return (committer or commit)(ws, table, segments(directory))


class Flusher:
    """Moves one worker's closed spool segments into the inference table in the background."""

    def __init__(
        self,
        ws: Workspace,
        table: str,
        spool: Spool,
        *,
        interval_s: float,
        max_rows: int,
        committer: Committer | None = None,
    ) -> None:
        self.ws = ws
        self.committer = committer or commit
        self.table = table
        self.spool = spool
        self.interval_s = interval_s
        self.max_rows = max_rows
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lakeforge-flush", daemon=True)
        self._thread.start()

    def log(self, record: dict[str, Any]) -> None:
        """Spool one record (durable when this returns); wake the flusher on a full segment."""
        if self.spool.append(record) >= self.max_rows:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        self.spool.rotate()
        try:
            self.committer(self.ws, self.table, self.spool.closed_segments())
        except Exception:
            log.exception("flushing the inference log to %s failed; will retry", self.table)

    def close(self) -> None:
        """Stop, flush everything spooled, remove the empty open segment."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
        self.flush()
        self.spool.close()


def spool_dir(ws: Workspace, endpoint: str) -> Path:
    """This host's spool folder for ``endpoint`` (under a local root, else the project)."""
    base = (
        Path(ws.target.root)
        if ws.target.is_local
        else ws.project.directory / ".lakeforge" / ws.target.name
    )
    return base / "serving" / endpoint / "spool" / os.uname().nodename
