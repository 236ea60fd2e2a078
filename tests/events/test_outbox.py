"""The outbox on a real state store: transactional emit, filters, at-least-once cursors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from lakeforge import Workspace
from lakeforge.cli._context import CliState
from lakeforge.cli._events import app as events_app
from lakeforge.events import (
    ALIAS_MOVED,
    APPROVAL_DECIDED,
    APPROVAL_REQUESTED,
    JOB_FINISHED,
    MODEL_VERSION_CREATED,
    Event,
    EventError,
    Outbox,
    backoff,
)
from lakeforge.state import StateStore, alias_events, event_cursors


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(ws: Workspace, clock: Clock) -> Outbox:
    return Outbox(ws.state, clock=clock)


def _move(conn: sa.Connection, to: int) -> None:
    row = {"model": "dev.ml.m", "alias": "champion", "to_version": to, "actor": "t"}
    conn.execute(sa.insert(alias_events).values(**row, at=datetime.now(UTC)))


def test_emit_commits_or_rolls_back_with_the_callers_transaction(
    ws: Workspace, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEFORGE_USER", "ada")
    engine = ws.state.connect_engine()
    with pytest.raises(RuntimeError, match="crash"), engine.begin() as conn:
        _move(conn, 1)
        outbox.emit(ALIAS_MOVED, "dev.ml.m", {"alias": "champion", "to": 1}, conn=conn)
        raise RuntimeError("crash before commit")
    assert outbox.list() == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alias_events)).scalar() == 0

    with engine.begin() as conn:
        _move(conn, 2)
        event_id = outbox.emit(ALIAS_MOVED, "dev.ml.m", {"alias": "champion", "to": 2}, conn=conn)
    [event] = outbox.list()
    assert event.id == event_id
    assert (event.type, event.subject, event.actor) == (ALIAS_MOVED, "dev.ml.m", "ada")
    assert event.payload == {"alias": "champion", "to": 2}
    assert event.created_at.tzinfo is not None
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(alias_events)).scalar() == 1
    # Without a connection the event commits on its own; the actor can be given.
    outbox.emit(JOB_FINISHED, "train", {"at": datetime(2025, 1, 2, tzinfo=UTC)}, actor="bot")
    assert outbox.list()[-1].payload == {"at": "2025-01-02T00:00:00+00:00"}
    assert outbox.list()[-1].actor == "bot"


def test_unknown_types_and_bad_payloads_are_refused(outbox: Outbox) -> None:
    with pytest.raises(EventError, match=r"unknown event type 'model\.deleted'.*alias\.moved"):
        outbox.emit("model.deleted", "dev.ml.m", {})
    with pytest.raises(EventError, match="not JSON"):
        outbox.emit(ALIAS_MOVED, "dev.ml.m", {"x": object()})
    with pytest.raises(EventError, match="matches no event type"):
        outbox.consume("c", lambda e: None, types=["approvals.*"])
    with pytest.raises(EventError, match="unknown event type"):
        outbox.list(type="nope")
    assert outbox.list() == []


def test_list_filters(outbox: Outbox) -> None:
    ids = [
        outbox.emit(MODEL_VERSION_CREATED, "dev.ml.a", {"version": 1}),
        outbox.emit(APPROVAL_REQUESTED, "dev.ml.a", {"version": 1}),
        outbox.emit(APPROVAL_DECIDED, "dev.ml.a", {"approved": True}),
        outbox.emit(MODEL_VERSION_CREATED, "dev.ml.b", {"version": 1}),
        outbox.emit(ALIAS_MOVED, "dev.ml.a_b", {"to": 1}),
    ]

    def listed(**filters: object) -> list[int]:
        return [e.id for e in outbox.list(**filters)]  # type: ignore[arg-type]

    assert listed() == ids
    assert listed(type=MODEL_VERSION_CREATED) == [ids[0], ids[3]]
    assert listed(type="approval.*") == [ids[1], ids[2]]
    assert listed(subject="dev.ml.a") == ids[:3]
    assert listed(subject="dev.ml.a*") == [ids[0], ids[1], ids[2], ids[4]]
    assert listed(subject="dev.ml.a_*") == [ids[4]]  # '_' is literal, not LIKE's wildcard
    assert listed(type=MODEL_VERSION_CREATED, subject="dev.ml.b") == [ids[3]]
    assert listed(after_id=ids[1], limit=2) == ids[2:4]
    assert listed(limit=2) == ids[3:]  # the newest, oldest first
    assert outbox.last_id() == ids[-1]


def test_consume_is_at_least_once_with_backoff(outbox: Outbox, clock: Clock) -> None:
    ids = [outbox.emit(JOB_FINISHED, f"job{i}", {"i": i}) for i in range(3)]
    seen: list[int] = []
    failures = {ids[1]: 2}  # the 2nd event fails twice

    def handler(event: Event) -> None:
        seen.append(event.id)
        if failures.get(event.id, 0) > 0:
            failures[event.id] -= 1
            raise ConnectionError("receiver down")

    assert outbox.consume("trigger", handler) == 1
    assert seen == [ids[0], ids[1]]
    cursor = outbox.cursor("trigger")
    assert cursor is not None
    assert (cursor.last_event_id, cursor.attempts) == (ids[0], 1)
    assert cursor.last_error == "ConnectionError: receiver down"
    assert cursor.next_attempt_at == clock.now + timedelta(seconds=1)

    assert outbox.consume("trigger", handler) == 0  # backing off: a no-op
    assert seen == [ids[0], ids[1]]

    clock.advance(1)
    assert outbox.consume("trigger", handler) == 0  # fails again: backoff doubles
    cursor = outbox.cursor("trigger")
    assert cursor is not None and cursor.attempts == 2
    assert cursor.next_attempt_at == clock.now + timedelta(seconds=2)

    clock.advance(2)
    assert outbox.consume("trigger", handler) == 2
    assert seen == [ids[0], ids[1], ids[1], ids[1], ids[2]]
    cursor = outbox.cursor("trigger")
    assert cursor is not None
    assert (cursor.last_event_id, cursor.attempts, cursor.last_error) == (ids[2], 0, None)
    assert cursor.next_attempt_at is None
    assert outbox.consume("trigger", handler) == 0

    assert [backoff(n).total_seconds() for n in (1, 2, 3, 9, 10, 50)] == [
        1,
        2,
        4,
        256,
        300,
        300,
    ]


def test_consume_filters_types_and_caps_a_pass(outbox: Outbox) -> None:
    ids = [
        outbox.emit(APPROVAL_REQUESTED, "m", {}),
        outbox.emit(JOB_FINISHED, "j", {}),
        outbox.emit(APPROVAL_DECIDED, "m", {}),
        outbox.emit(JOB_FINISHED, "j", {}),
    ]
    seen: list[int] = []
    assert outbox.consume("approvals", lambda e: seen.append(e.id), types=["approval.*"]) == 2
    assert seen == [ids[0], ids[2]]
    cursor = outbox.cursor("approvals")
    assert cursor is not None and cursor.last_event_id == ids[3]  # moved past skipped events

    batch: list[int] = []
    assert outbox.consume("all", lambda e: batch.append(e.id), max_events=3) == 3
    assert outbox.consume("all", lambda e: batch.append(e.id), max_events=3) == 1
    assert batch == ids
    assert [c.consumer for c in outbox.cursors()] == ["all", "approvals"]


def test_a_dead_consumers_lease_expires(ws: Workspace, outbox: Outbox, clock: Clock) -> None:
    outbox.emit(JOB_FINISHED, "j", {})
    seen: list[Event] = []
    outbox.consume("c", seen.append, max_events=0)  # creates the cursor
    with ws.state.connect_engine().begin() as conn:  # as a process killed mid-pass leaves it
        conn.execute(
            sa.update(event_cursors).values(
                lease_owner="dead", lease_until=clock.now + timedelta(seconds=60)
            )
        )
    assert outbox.consume("c", seen.append) == 0
    clock.advance(61)
    assert outbox.consume("c", seen.append) == 1


def _consume_concurrently(url: str, count: int) -> list[int]:
    """Two consumers of one name, each with its own engine; returns the delivered ids."""
    delivered: list[int] = []
    inside = threading.Semaphore(1)
    errors: list[str] = []

    def handler(event: Event) -> None:
        if not inside.acquire(blocking=False):
            errors.append(f"event {event.id} delivered while another delivery ran")
            return
        try:
            time.sleep(0.002)
            delivered.append(event.id)
        finally:
            inside.release()

    def worker() -> None:
        store = StateStore(url)
        outbox = Outbox(store)
        deadline = time.monotonic() + 30
        try:
            while len(delivered) < count and time.monotonic() < deadline:
                outbox.consume("shared", handler)
        finally:
            store.dispose()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return delivered


def test_two_consumers_of_one_name_never_deliver_concurrently(ws: Workspace) -> None:
    outbox = Outbox(ws.state)
    with ws.state.connect_engine().begin() as conn:
        ids = [outbox.emit(JOB_FINISHED, f"j{i}", {}, conn=conn) for i in range(30)]
    assert _consume_concurrently(ws.state.url, len(ids)) == ids


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[StateStore]:
    store = StateStore(pg_url)
    yield store
    store.dispose()


@pytest.mark.postgres
def test_outbox_on_postgresql(pg_store: StateStore, pg_url: str) -> None:
    outbox = Outbox(pg_store)
    engine = pg_store.connect_engine()
    with pytest.raises(RuntimeError), engine.begin() as conn:
        outbox.emit(ALIAS_MOVED, "m", {}, conn=conn)
        raise RuntimeError
    assert outbox.list() == []

    # Concurrent emitters: ids become visible in commit order, so a consumer that runs
    # meanwhile never moves past an event that commits later.
    seen: list[int] = []

    def emitter(n: int) -> None:
        for i in range(10):
            with engine.begin() as conn:
                outbox.emit(JOB_FINISHED, f"j{n}", {"i": i}, conn=conn)
                time.sleep(0.002 * ((n + i) % 4))  # commit late, sometimes

    threads = [threading.Thread(target=emitter, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        outbox.consume("live", lambda e: seen.append(e.id))
    for thread in threads:
        thread.join()
    outbox.consume("live", lambda e: seen.append(e.id))
    ids = [e.id for e in outbox.list(limit=1000)]
    assert len(ids) == 40 and seen == ids

    assert _consume_concurrently(pg_url, len(ids)) == ids


def test_cli_lists_events(ws: Workspace, project_dir: Path, outbox: Outbox) -> None:
    outbox.emit(MODEL_VERSION_CREATED, "dev.ml.delay", {"version": 3})
    outbox.emit(JOB_FINISHED, "train", {"status": "ok"})
    runner = CliRunner()
    state = CliState(target="dev", project_dir=project_dir)
    result = runner.invoke(events_app, ["list", "--type", "model_version.*"], obj=state)
    assert result.exit_code == 0, result.output
    assert "dev.ml.delay" in result.output and "train" not in result.output
    result = runner.invoke(events_app, ["deliver", "--once"], obj=state)
    assert result.exit_code == 0, result.output
    assert "no webhooks" in result.output
    state.workspace().close()
