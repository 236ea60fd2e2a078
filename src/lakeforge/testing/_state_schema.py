"""State store checks of the schema: migrations, the ``upsert`` helper, timestamps."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from lakeforge.state import StateStore, as_utc, head_revision, metadata, trigger_state, upsert
from lakeforge.testing._support import WAIT_S, opened_store, unique_name

# -- migrations -----------------------------------------------------------------------------

# A process that migrates once the parent says go, so all of them start at the same moment.
_MIGRATE = """
import sys
from lakeforge.state import StateStore
store = StateStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
store.migrate()
print(store.revision(), flush=True)
store.dispose()
"""


def check_concurrent_migration(url: str) -> None:
    """Processes opening the empty store at once all migrate it to head, none fails."""
    fresh = StateStore(url)
    try:
        revision = fresh.revision()
    finally:
        fresh.dispose()
    assert revision is None, (
        f"check_concurrent_migration needs an empty database, but {fresh.url} is at "
        f"revision {revision}; give it a new database"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _MIGRATE, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready", process.communicate()[1]
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = [process.communicate(timeout=WAIT_S * 2) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (out, err) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, f"a migrating process failed:\n{err[-3000:]}"
        assert out.strip() == str(head_revision())


def check_migrations_are_idempotent(url: str) -> None:
    """Migrating again, from this or another process' store, changes nothing."""
    with opened_store(url) as store:
        assert store.revision() == head_revision()
        store.migrate()
        names = set(sa.inspect(store.engine).get_table_names())
        missing = sorted(set(metadata.tables) - names)
        assert not missing, f"migrated to head, yet tables {missing} are missing"
    with opened_store(url) as again:
        assert again.revision() == head_revision()


# -- helpers every service uses -------------------------------------------------------------


def check_upsert(url: str) -> None:
    """``upsert`` inserts a new key and updates an existing one, never duplicating it."""
    job = unique_name("job")
    at = datetime.now(UTC)
    with opened_store(url) as store, store.connect_engine().begin() as conn:
        upsert(conn, trigger_state, {"job": job, "trigger": "a"}, {"cursor": "1", "updated_at": at})
        upsert(conn, trigger_state, {"job": job, "trigger": "a"}, {"cursor": "2", "updated_at": at})
        upsert(conn, trigger_state, {"job": job, "trigger": "b"}, {"cursor": "3", "updated_at": at})
        rows = conn.execute(
            sa.select(trigger_state.c.trigger, trigger_state.c.cursor)
            .where(trigger_state.c.job == job)
            .order_by(trigger_state.c.trigger)
        )
        assert [tuple(row) for row in rows] == [("a", "2"), ("b", "3")]


def check_timestamps_round_trip_as_utc(url: str) -> None:
    """UTC datetimes come back, through ``as_utc``, as the same instants to the microsecond,
    and compare in the database as instants (whatever the session's time zone)."""
    job = unique_name("job")
    moments = [
        datetime(2024, 3, 31, 1, 30, 0, 1, tzinfo=UTC),  # a daylight-saving change in Europe
        datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2025, 7, 1, 12, 0, 0, 500000, tzinfo=UTC),
    ]
    with opened_store(url) as store:
        engine = store.connect_engine()
        with engine.begin() as conn:
            for index, moment in enumerate(moments):
                key = {"job": job, "trigger": str(index)}
                upsert(conn, trigger_state, key, {"cursor": "-", "updated_at": moment})
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # values come back in the session's zone
                conn.exec_driver_sql("SET TIME ZONE 'Asia/Kolkata'")
            query = sa.select(trigger_state.c.updated_at).where(trigger_state.c.job == job)
            ordered = query.order_by(trigger_state.c.trigger)
            read = [as_utc(v) for v in conn.execute(ordered).scalars()]
            assert read == moments
            assert all(v.utcoffset() == timedelta(0) for v in read)
            before = query.where(trigger_state.c.updated_at < moments[1])
            assert [as_utc(v) for v in conn.execute(before).scalars()] == moments[:1]
