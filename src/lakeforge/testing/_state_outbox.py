"""State store checks of the events outbox: emit, list, cursors and the consumer lease."""

from __future__ import annotations

import threading
from contextlib import suppress
from datetime import UTC, datetime, timedelta

from lakeforge.events import JOB_FINISHED, MONITOR_ALERT, Event, Outbox
from lakeforge.testing._support import WAIT_S, Abort, opened_store, race, unique_name

# -- the events outbox ----------------------------------------------------------------------


def check_outbox_emit_and_list(url: str) -> None:
    """Emitted events list in id order, filtered by type and subject, after an id."""
    subject = unique_name("subject")
    with opened_store(url) as store:
        outbox = Outbox(store)
        ids = [
            outbox.emit(JOB_FINISHED, subject, {"n": 1, "at": datetime(2024, 1, 1, tzinfo=UTC)}),
            outbox.emit(MONITOR_ALERT, subject, {"n": 2}),
            outbox.emit(JOB_FINISHED, subject, {"n": 3}),
        ]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert outbox.last_id() >= ids[-1]
        listed = outbox.list(subject=subject)
        assert [e.id for e in listed] == ids
        assert listed[0].payload == {"n": 1, "at": "2024-01-01T00:00:00+00:00"}
        assert listed[0].created_at.tzinfo is not None
        assert [e.id for e in outbox.list(subject=subject, type=JOB_FINISHED)] == ids[::2]
        assert [e.id for e in outbox.list(subject=f"{subject[:-4]}*", type="job.*")] == ids[::2]
        assert [e.id for e in outbox.list(subject=subject, after_id=ids[0], limit=1)] == ids[1:2]
        assert [e.id for e in outbox.list(subject=subject, limit=2)] == ids[1:]


def check_outbox_emit_commits_with_the_caller(url: str) -> None:
    """An event emitted in a transaction that rolls back was never emitted."""
    subject = unique_name("subject")
    with opened_store(url) as store:
        outbox = Outbox(store)
        with suppress(Abort), store.connect_engine().begin() as conn:
            outbox.emit(JOB_FINISHED, subject, {"kept": False}, conn=conn)
            raise Abort
        with store.connect_engine().begin() as conn:
            kept = outbox.emit(JOB_FINISHED, subject, {"kept": True}, conn=conn)
        assert [(e.id, e.payload) for e in outbox.list(subject=subject)] == [(kept, {"kept": True})]


def check_outbox_cursor_backs_off_and_redelivers(url: str) -> None:
    """A consumer's cursor moves past each handled event; a failure backs off, then retries."""
    subject, consumer = unique_name("subject"), unique_name("consumer")
    now = [datetime.now(UTC)]
    with opened_store(url) as store:
        outbox = Outbox(store, clock=lambda: now[0])
        first, second = (outbox.emit(JOB_FINISHED, subject, {"n": n}) for n in (1, 2))
        seen: list[int] = []
        failing = [True]

        def handler(event: Event) -> None:
            if event.subject != subject:
                return  # another check's event: this database may hold some
            if event.id == second and failing[0]:
                raise RuntimeError("handler down")
            seen.append(event.id)

        outbox.consume(consumer, handler)
        cursor = outbox.cursor(consumer)
        assert seen == [first] and cursor is not None
        assert first <= cursor.last_event_id < second
        assert cursor.attempts == 1 and cursor.last_error == "RuntimeError: handler down"
        assert cursor.next_attempt_at is not None and cursor.next_attempt_at > now[0]
        failing[0] = False
        assert outbox.consume(consumer, handler) == 0, "a pass during the backoff does nothing"
        now[0] = cursor.next_attempt_at + timedelta(seconds=1)
        outbox.consume(consumer, handler)
        assert seen == [first, second]
        after = outbox.cursor(consumer)
        assert after is not None and after.last_event_id >= second
        assert (after.attempts, after.last_error, after.next_attempt_at) == (0, None, None)
        assert consumer in [c.consumer for c in outbox.cursors()]


def check_outbox_consumer_lease(url: str) -> None:
    """While a pass runs, another does nothing; once its lease expires, another takes over."""
    subject, consumer = unique_name("subject"), unique_name("consumer")
    with opened_store(url) as store:
        ids = [Outbox(store).emit(JOB_FINISHED, subject, {"n": n}) for n in (1, 2)]
        entered, proceed = threading.Event(), threading.Event()
        stalled: list[int] = []
        calls = [0]

        def stalling(event: Event) -> None:  # a pass that hangs in its first handler
            calls[0] += 1
            if event.subject == subject:
                stalled.append(event.id)
                entered.set()
                proceed.wait(WAIT_S)

        result: list[int] = []
        thread = threading.Thread(
            target=lambda: result.append(Outbox(store, lease_s=30).consume(consumer, stalling))
        )
        thread.start()
        try:
            assert entered.wait(WAIT_S), "the first pass never reached its handler"
            others: list[int] = []

            def record(event: Event) -> None:
                if event.subject == subject:
                    others.append(event.id)

            assert Outbox(store, lease_s=30).consume(consumer, record) == 0
            assert others == [], "a second pass ran while the first held the lease"
            later = datetime.now(UTC) + timedelta(seconds=60)
            Outbox(store, lease_s=30, clock=lambda: later).consume(consumer, record)
            assert others == ids, "after the lease expired the next pass redelivers"
        finally:
            proceed.set()
            thread.join()
        assert stalled == ids[:1], "the stalled pass stops once taken over"
        assert result == calls, "the stalled pass counts the events it handled"
        cursor = Outbox(store).cursor(consumer)
        assert cursor is not None and cursor.last_event_id >= ids[-1]


def check_outbox_racing_consumers_handle_each_event_once(url: str) -> None:
    """Passes of one consumer racing from several processes handle each event once."""
    subject, consumer = unique_name("subject"), unique_name("consumer")
    with opened_store(url) as store:
        ids = [Outbox(store).emit(JOB_FINISHED, subject, {"n": n}) for n in range(5)]
        handled: list[int] = []
        lock = threading.Lock()

        def handler(event: Event) -> None:
            if event.subject == subject:
                with lock:
                    handled.append(event.id)

        race(lambda _: Outbox(store).consume(consumer, handler))
        Outbox(store).consume(consumer, handler)
        assert handled == ids
