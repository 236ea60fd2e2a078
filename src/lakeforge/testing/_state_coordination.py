"""State store checks of what keeps processes apart: leases, fire keys, approvals and
ingest claims, each raced from several connections."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from lakeforge.events import APPROVAL_DECIDED, Outbox
from lakeforge.jobs import record_run
from lakeforge.registry import write_audit
from lakeforge.state import (
    Lease,
    StateStore,
    approval_requests,
    audit_log,
    ingest_files,
    job_runs,
    trigger_fires,
    trigger_state,
    upsert,
)
from lakeforge.testing._support import RACERS, ROUNDS, Abort, opened_store, race, unique_name

# -- leases ---------------------------------------------------------------------------------


def check_lease_acquire_renew_release(url: str) -> None:
    """One owner at a time; only the owner renews; a release frees it for the next at once."""
    name = unique_name("lease")
    with opened_store(url) as store:
        first = Lease(store, name, duration=timedelta(minutes=1), owner="first")
        second = Lease(store, name, duration=timedelta(minutes=1), owner="second")
        assert first.holder() is None
        assert first.acquire()
        assert first.acquire(), "the owner may take its own lease again (a renewal)"
        assert not second.acquire()
        assert not second.renew()
        held = first.holder()
        assert held is not None and held.owner == "first"
        assert first.renew()
        renewed = first.holder()
        assert renewed is not None and renewed.until >= held.until
        second.release()  # not the owner's: changes nothing
        assert first.holder() is not None
        first.release()
        assert first.holder() is None
        assert second.acquire()
        assert not first.renew()


def check_lease_expires_and_is_taken_over(url: str) -> None:
    """A holder that stops renewing loses the lease at its expiry, to the next taker."""
    name = unique_name("lease")
    now = [datetime.now(UTC).replace(microsecond=123456)]

    def clock() -> datetime:
        return now[0]

    with opened_store(url) as store:
        dead = Lease(store, name, duration=timedelta(seconds=10), owner="dead", clock=clock)
        live = Lease(store, name, duration=timedelta(seconds=10), owner="live", clock=clock)
        assert dead.acquire()
        held = dead.holder()
        assert held is not None and held.until == now[0] + timedelta(seconds=10)
        now[0] += timedelta(seconds=9)
        assert not live.acquire(), "a lease is never taken before it expires"
        now[0] += timedelta(seconds=2)
        assert dead.holder() is None
        assert not dead.renew(), "an expired lease cannot be renewed"
        assert live.acquire()
        taken = live.holder()
        assert taken is not None and taken.owner == "live"
        assert not dead.acquire()
        dead.release()
        assert live.holder() is not None, "the old holder's release leaves the new one's be"


def _race_for_lease(store: StateStore, *, expired_holder: bool) -> None:
    name = unique_name("lease")
    if expired_holder:  # the row a crashed holder (an ingest run, a scheduler) leaves
        past = datetime.now(UTC) - timedelta(hours=1)
        crashed = Lease(store, name, duration=timedelta(seconds=1), clock=lambda: past)
        assert crashed.acquire()
    racers = [
        Lease(store, name, duration=timedelta(minutes=1), owner=f"owner-{i}") for i in range(RACERS)
    ]
    won = race(lambda i: racers[i].acquire())
    assert won.count(True) == 1, f"owners racing for a lease acquired {won}"
    holder = racers[0].holder()
    assert holder is not None and holder.owner == f"owner-{won.index(True)}"


def check_lease_racing_owners_one_wins(url: str) -> None:
    """Owners racing for a free lease, or for an expired one: exactly one gets it."""
    with opened_store(url) as store:
        for round in range(ROUNDS):
            _race_for_lease(store, expired_holder=bool(round % 2))


# -- the scheduler's firings ----------------------------------------------------------------


def _fire(conn: sa.Connection, job: str, key: str) -> int | None:
    return record_run(
        conn,
        job=job,
        tasks=["task"],
        parameters={},
        trigger="cron",
        trigger_info={"conformance": True},
        fire_key=key,
        runner="conformance",
    )


def check_fire_key_fires_once(url: str) -> None:
    """Schedulers racing to record one firing (a cron time, an event): one run is recorded."""
    with opened_store(url) as store:
        engine = store.connect_engine()
        key = "cron:2024-01-01T06:00Z"
        for _ in range(ROUNDS):
            job = unique_name("job")

            def fire(_: int, job: str = job) -> int | None:
                with engine.begin() as conn:
                    return _fire(conn, job, key)

            fired = [run for run in race(fire) if run is not None]
            assert len(fired) == 1, f"one fire key recorded {len(fired)} runs"
            with engine.begin() as conn:
                assert _fire(conn, job, key) is None, "a key that fired never fires again"
                runs = conn.execute(sa.select(job_runs.c.id).where(job_runs.c.job == job))
                assert list(runs.scalars()) == fired
                fires = conn.execute(
                    sa.select(trigger_fires.c.run_id).where(trigger_fires.c.job == job)
                )
                assert list(fires.scalars()) == fired


def check_firing_and_cursor_commit_together(url: str) -> None:
    """A firing and the trigger cursor moved past it commit, or roll back, together."""
    job = unique_name("job")
    key = {"job": job, "trigger": "cron"}
    with opened_store(url) as store:
        engine = store.connect_engine()

        def tick(cursor: str) -> int | None:
            with engine.begin() as conn:
                run = _fire(conn, job, f"cron:{cursor}")
                upsert(
                    conn, trigger_state, key, {"cursor": cursor, "updated_at": datetime.now(UTC)}
                )
                return run

        with suppress(Abort), engine.begin() as conn:  # a scheduler killed mid-tick
            _fire(conn, job, "cron:t1")
            upsert(conn, trigger_state, key, {"cursor": "t1", "updated_at": datetime.now(UTC)})
            raise Abort
        with engine.connect() as conn:
            for table in (trigger_fires, trigger_state, job_runs):
                count = sa.select(sa.func.count()).where(table.c.job == job)
                assert conn.execute(count).scalar_one() == 0, f"{table.name} kept a rolled-back row"
        run = tick("t1")  # the next scheduler fires it
        assert run is not None
        assert tick("t1") is None
        with engine.connect() as conn:
            cursor = sa.select(trigger_state.c.cursor).where(trigger_state.c.job == job)
            assert conn.execute(cursor).scalar_one() == "t1"
            fired = sa.select(trigger_fires.c.run_id).where(trigger_fires.c.job == job)
            assert conn.execute(fired).scalar_one() == run


# -- approvals ------------------------------------------------------------------------------


def check_approval_decided_once(url: str) -> None:
    """Approvers racing on one request: one conditional update decides it, with its audit
    row and event; the others find it decided and write nothing."""
    model = unique_name("model")
    with opened_store(url) as store:
        engine = store.connect_engine()
        with engine.begin() as conn:
            request = conn.execute(
                sa.insert(approval_requests).values(
                    model=model,
                    version=1,
                    target="conformance",
                    status="pending",
                    requested_by="requester",
                    requested_at=datetime.now(UTC),
                    kind="promote",
                )
            ).inserted_primary_key
        assert request is not None
        request_id = int(request[0])

        def decide(index: int) -> bool:
            decision = "approved" if index % 2 else "rejected"
            actor = f"approver-{index}"
            with engine.begin() as conn:  # as Approvals._decide does
                claimed = conn.execute(
                    sa.update(approval_requests)
                    .where(
                        approval_requests.c.id == request_id,
                        approval_requests.c.status == "pending",
                    )
                    .values(status=decision, decided_by=actor, decided_at=datetime.now(UTC))
                ).rowcount
                if claimed != 1:
                    return False
                write_audit(
                    conn,
                    actor=actor,
                    action=decision,
                    outcome="done",
                    model=model,
                    version=1,
                    request_id=request_id,
                )
                Outbox(store).emit(
                    APPROVAL_DECIDED, model, {"request_id": request_id}, actor=actor, conn=conn
                )
                return True

        won = race(decide)
        assert won.count(True) == 1, f"racing approvers decided {won}"
        winner = won.index(True)
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(approval_requests).where(approval_requests.c.id == request_id)
            ).one()
            audited = conn.execute(
                sa.select(audit_log.c.actor).where(audit_log.c.request_id == request_id)
            )
            assert list(audited.scalars()) == [f"approver-{winner}"]
        assert row.decided_by == f"approver-{winner}"
        assert row.status == ("approved" if winner % 2 else "rejected")
        assert [e.actor for e in Outbox(store).list(subject=model)] == [f"approver-{winner}"]


# -- ingest checkpoints ---------------------------------------------------------------------


def _checkpoint_row(table: str, path: str, status: str, **values: Any) -> dict[str, Any]:
    return {
        "table_name": table,
        "path": path,
        "size": 10,
        "mtime_ns": 1,
        "content_hash": "ab" * 32,
        "status": status,
        "updated_at": datetime.now(UTC),
        "batch": None,
        "error": None,
        **values,
    }


def _checkpoint(conn: sa.Connection, table: str) -> dict[str, tuple[str, int | None]]:
    rows = conn.execute(
        sa.select(ingest_files.c.path, ingest_files.c.status, ingest_files.c.rows).where(
            ingest_files.c.table_name == table
        )
    )
    return {row.path: (row.status, row.rows) for row in rows}


def check_ingest_checkpoint(url: str) -> None:
    """Files are claimed pending, then marked loaded or failed; one row per (table, path)."""
    table, other = unique_name("table"), unique_name("table")
    with opened_store(url) as store:
        engine = store.connect_engine()
        with engine.begin() as conn:  # a claim: the batch pending, a bad file failed
            conn.execute(
                sa.insert(ingest_files),
                [
                    _checkpoint_row(table, "/in/a.csv", "pending", batch=1),
                    _checkpoint_row(table, "/in/b.csv", "pending", batch=1),
                    _checkpoint_row(table, "/in/bad.csv", "failed", error="not a CSV"),
                ],
            )
        with engine.begin() as conn:  # the batch committed
            conn.execute(
                sa.update(ingest_files)
                .where(ingest_files.c.table_name == table, ingest_files.c.batch == 1)
                .values(status="loaded", table_version=0, rows=5, updated_at=datetime.now(UTC))
            )
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(ingest_files), [_checkpoint_row(table, "/in/a.csv", "pending")])
        with engine.begin() as conn:  # another table may hold the same path
            conn.execute(sa.insert(ingest_files), [_checkpoint_row(other, "/in/a.csv", "pending")])
        with engine.begin() as conn:  # a retry claims the failed file again, in one transaction
            conn.execute(
                sa.delete(ingest_files).where(
                    ingest_files.c.table_name == table,
                    ingest_files.c.status == "failed",
                    ingest_files.c.path.in_(["/in/bad.csv"]),
                )
            )
            conn.execute(
                sa.insert(ingest_files), [_checkpoint_row(table, "/in/bad.csv", "pending", batch=2)]
            )
        with engine.connect() as conn:
            assert _checkpoint(conn, table) == {
                "/in/a.csv": ("loaded", 5),
                "/in/b.csv": ("loaded", 5),
                "/in/bad.csv": ("pending", None),
            }
            assert _checkpoint(conn, other) == {"/in/a.csv": ("pending", None)}


def check_ingest_racing_claims_one_wins(url: str) -> None:
    """Runs racing to claim one file: one claim commits, the others fail whole."""
    with opened_store(url) as store:
        engine = store.connect_engine()
        for _ in range(ROUNDS):
            table = unique_name("table")

            def claim(index: int, table: str = table) -> bool:
                rows = [
                    _checkpoint_row(table, f"/in/own-{index}.csv", "pending", batch=index),
                    _checkpoint_row(table, "/in/shared.csv", "pending", batch=index),
                ]
                try:
                    with engine.begin() as conn:
                        conn.execute(sa.insert(ingest_files), rows)
                except IntegrityError:
                    return False
                return True

            won = race(claim)
            assert won.count(True) == 1, f"racing claims committed {won}"
            with engine.connect() as conn:
                assert sorted(_checkpoint(conn, table)) == sorted(
                    ["/in/shared.csv", f"/in/own-{won.index(True)}.csv"]
                ), "a failed claim left rows behind"
