"""The state store: control-plane records in SQLite (embedded) or PostgreSQL (teams)."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from lakeforge.errors import ConfigError

_MIGRATIONS = Path(__file__).with_name("migrations")
# Our own version table, so the state store can share a database with other Alembic users
# (Optuna's RDB storage keeps its schema version in ``alembic_version``).
VERSION_TABLE = "lakeforge_alembic_version"
_lock = threading.Lock()
_MIGRATION_LOCK_KEY = 0x4C414B45  # "LAKE": the advisory lock PostgreSQL migrations hold


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def head_revision() -> str | None:
    """The newest migration this version of Lakeforge ships."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


class StateStore:
    """A SQLAlchemy engine on the state store, migrated to the newest schema on first use."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"state store URL {url!r} is not a SQLAlchemy URL") from None
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(parsed, pool_pre_ping=True)
        except NoSuchModuleError:
            raise ConfigError(f"state store URL {url!r}: unknown database dialect") from None
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"state store URL {url!r} needs the driver {exc.name!r}",
                hint="pip install 'lakeforge[postgres]' for PostgreSQL",
            ) from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.url = parsed.render_as_string(hide_password=True)
        self._migrated = False

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (a no-op when it is current)."""
        if self._migrated:
            return
        with _lock:
            try:
                with self.engine.begin() as conn:
                    _exclude_other_migrations(conn)
                    current = _context(conn).get_current_revision()
                    if current != head_revision():
                        config = _alembic_config()
                        config.attributes["connection"] = conn
                        command.upgrade(config, "head")
            except OperationalError as exc:
                raise ConfigError(f"cannot reach the state store {self.url}: {exc.orig}") from None
        self._migrated = True

    def connect_engine(self) -> Engine:
        """The engine, after making sure the schema is current."""
        self.migrate()
        return self.engine

    def revision(self) -> str | None:
        """The schema revision the database is at."""
        with self.engine.connect() as conn:
            return _context(conn).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()


def upsert(conn: Connection, table: Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Update the row of ``table`` with ``key``, or insert it (portable SQLite/PostgreSQL)."""
    where = [table.c[name] == value for name, value in key.items()]
    if not conn.execute(update(table).where(*where).values(**values)).rowcount:
        conn.execute(insert(table).values(**key, **values))


def as_utc(value: datetime) -> datetime:
    """A datetime read from the state store, in UTC (SQLite returns them naive; all are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _exclude_other_migrations(conn: Connection) -> None:
    """Make a concurrent migration of the same database wait until this transaction ends.

    Without it two processes opening a new store at once both see no schema, and the
    second fails creating tables the first made.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock before reading


def _context(conn: Connection) -> MigrationContext:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL persists in the file; switching needs a moment without other writers, so only
    # the first connection switches, retrying while another one holds the lock.
    deadline = time.monotonic() + 30
    while str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    cursor.close()
