"""The embedded online store: one SQLite file (WAL mode), one generic table of rows."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from lakeforge.features.online._base import OnlineStore, ReadRequest
from lakeforge.features.online._codec import Record, Stored, TableSpec, check_name

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_tables (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS online_rows (
    namespace TEXT NOT NULL,
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    ts INTEGER,
    written INTEGER NOT NULL,
    vals TEXT NOT NULL,
    PRIMARY KEY (namespace, tbl, key)
) WITHOUT ROWID;
"""

# The timestamp guard: an existing row is replaced only by a row at least as new.
_UPSERT = """
INSERT INTO online_rows (namespace, tbl, key, ts, written, vals) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (namespace, tbl, key) DO UPDATE SET
    ts = excluded.ts, written = excluded.written, vals = excluded.vals
WHERE excluded.ts IS NULL OR online_rows.ts IS NULL OR excluded.ts >= online_rows.ts
"""

# Reads are one statement each, so one snapshot: the first column says whether the stored
# spec is still the text the reader holds (no row at all: the table is gone). ?1 that text
# (NULL: not checked), ?2 the key (a JSON list of keys for many), ?3 the namespace, ?4 the
# table. The sqlite3 module prepares each once per connection (its statement cache); every
# row is found by its primary key.
_FETCH_ONE = """
SELECT (?1 IS NULL OR t.spec = ?1), r.ts, r.written, r.vals FROM online_tables AS t
LEFT JOIN online_rows AS r ON r.namespace = ?3 AND r.tbl = ?4 AND r.key = ?2
WHERE t.namespace = ?3 AND t.name = ?4
"""
_FETCH_MANY = """
SELECT (?1 IS NULL OR t.spec = ?1), j.key, r.ts, r.written, r.vals FROM online_tables AS t
CROSS JOIN json_each(?2) AS j
LEFT JOIN online_rows AS r ON r.namespace = ?3 AND r.tbl = ?4 AND r.key = j.value
WHERE t.namespace = ?3 AND t.name = ?4
"""
_SPEC_IS = "SELECT (?1 IS NULL OR spec = ?1) FROM online_tables WHERE namespace = ?3 AND name = ?4"


class SqliteOnlineStoreConfig(BaseModel):
    """Config of the SQLite online store (``sqlite:///path/online.db``)."""

    type: Literal["sqlite"] = "sqlite"
    path: Path
    namespace: str
    timeout_s: float = 30.0


class SqliteOnlineStore(OnlineStore):
    """Online store in a local SQLite file; safe across threads and processes."""

    def __init__(self, config: SqliteOnlineStoreConfig) -> None:
        self.config = config
        self.namespace = check_name("namespace", config.namespace)
        config.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            config.path, timeout=config.timeout_s, isolation_level=None, check_same_thread=False
        )
        self._use_wal()
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def _use_wal(self) -> None:
        """Switch the file to WAL once; the switch needs a moment with no other writer."""
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal":
                return
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``BEGIN IMMEDIATE`` takes the write lock up front."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def tables(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name FROM online_tables WHERE namespace = ? ORDER BY name",
                (self.namespace,),
            ).fetchall()
        return [name for (name,) in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _get_spec_text(self, table: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT spec FROM online_tables WHERE namespace = ? AND name = ?",
                (self.namespace, table),
            ).fetchone()
        return None if row is None else str(row[0])

    def _get_spec(self, table: str) -> TableSpec | None:
        text = self._get_spec_text(table)
        return None if text is None else self._parse_spec(table, text)

    def _put_spec(self, spec: TableSpec) -> TableSpec:
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO online_tables (namespace, name, spec) VALUES (?, ?, ?)",
                (self.namespace, spec.name, spec.to_json()),
            )
            (text,) = conn.execute(
                "SELECT spec FROM online_tables WHERE namespace = ? AND name = ?",
                (self.namespace, spec.name),
            ).fetchone()
        return self._parse_spec(spec.name, text)

    def _upsert(self, spec: TableSpec, records: Sequence[Record], written: int) -> int:
        params = [
            (self.namespace, spec.name, r.key, r.ts, written, json.dumps(r.values)) for r in records
        ]
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(_UPSERT, params)
            return conn.total_changes - before

    def _fetch(
        self, spec: TableSpec, keys: Sequence[str], features: Sequence[str]
    ) -> list[Stored | None]:
        found = self._fetch_checked(None, spec, list(keys), list(features))
        return [None] * len(keys) if found is None else found

    def _read(
        self, table: str, request: ReadRequest
    ) -> tuple[TableSpec, list[str], list[Stored | None]]:
        return self._read_checked(table, request, self._fetch_checked)

    def _fetch_checked(
        self, text: str | bytes | None, spec: TableSpec, keys: list[str], features: list[str]
    ) -> list[Stored | None] | None:
        """The rows of ``keys``, or None when the stored spec is not ``text`` (or is gone).

        ``text`` None: no spec check.
        """
        param: str | None
        if len(keys) == 1:  # an index lookup, no JSON list of keys
            query, param = _FETCH_ONE, keys[0]
        else:
            query, param = (_FETCH_MANY, json.dumps(keys)) if keys else (_SPEC_IS, None)
        with self._lock:
            rows = self._conn.execute(query, (text, param, self.namespace, spec.name)).fetchall()
        if not rows or not all(row[0] for row in rows):
            return None
        if not keys:
            return []
        if len(keys) == 1:
            (_, ts, written, vals), *_ = rows
            return [None if vals is None else Stored(ts, written, json.loads(vals))]
        found: list[Stored | None] = [None] * len(keys)
        present = [row for row in rows if row[4] is not None]
        values = json.loads("[" + ",".join(row[4] for row in present) + "]")  # one parse
        for (_, i, ts, written, _), vals in zip(present, values, strict=True):
            found[i] = Stored(ts, written, vals)
        return found

    def _delete(self, spec: TableSpec, keys: Sequence[str]) -> int:
        with self._transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "DELETE FROM online_rows WHERE namespace = ? AND tbl = ? AND key = ?",
                [(self.namespace, spec.name, key) for key in keys],
            )
            return conn.total_changes - before

    def _drop(self, table: str) -> None:
        with self._transaction() as conn:
            conn.execute(
                "DELETE FROM online_rows WHERE namespace = ? AND tbl = ?", (self.namespace, table)
            )
            conn.execute(
                "DELETE FROM online_tables WHERE namespace = ? AND name = ?",
                (self.namespace, table),
            )
