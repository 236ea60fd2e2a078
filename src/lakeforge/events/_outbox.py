"""The transactional outbox: events stored with the state change they describe.

``Outbox.emit(..., conn=conn)`` inserts the event in the caller's transaction, so the
change and its event commit together or not at all. Consumers (webhooks, the jobs
engine's internal triggers) read events in id order behind a durable cursor
(``event_cursors``) and get each one at least once.

Ordering: a consumer must never see event 7 commit after it has moved past it. SQLite
has one writer at a time, so ids become visible in order. On PostgreSQL, ``emit`` takes
``LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE`` (readers are not blocked), so
transactions that emit commit one after the other in id order; emit last in a
transaction to hold that lock briefly.

Exclusion: a consumer pass first takes a *lease* on its cursor row with one conditional
``UPDATE`` (``lease_owner``, ``lease_until``), which is atomic on both databases and
keeps no transaction open while handlers run (on SQLite a long transaction would block
every writer). A second process finds the lease held and does nothing; the lease is
renewed on every cursor move and released at the end of the pass. A process that dies
keeps it until ``lease_until`` (``lease_s``, default 60 s), then another takes over and
redelivers from the cursor. Handlers must finish well within ``lease_s``.
"""

from __future__ import annotations

import builtins
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, Engine, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from lakeforge._identity import current_user
from lakeforge.errors import LakeforgeError
from lakeforge.project import EventError, check_patterns, check_type, matches
from lakeforge.state import StateStore, as_utc, event_cursors, events

BACKOFF_BASE_S: Final = 1.0
BACKOFF_MAX_S: Final = 300.0
_BATCH = 100
_ERROR_CHARS = 2000

Clock = Callable[[], datetime]
Handler = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    """One recorded event."""

    id: int
    type: str
    subject: str
    payload: dict[str, Any]
    actor: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """The JSON form webhooks receive."""
        return {
            "id": self.id,
            "type": self.type,
            "subject": self.subject,
            "payload": self.payload,
            "actor": self.actor,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class Cursor:
    """Where a consumer is: the last event it handled, and its retry state."""

    consumer: str
    last_event_id: int
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    updated_at: datetime


def backoff(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th consecutive failure: 1 s, 2 s, 4 s, ... at most 300 s."""
    return timedelta(seconds=min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _filter(column: Any, value: str) -> ColumnElement[bool]:
    if "*" in value or "?" in value:
        return column.like(_like(value), escape="\\")
    return column == value


class Outbox:
    """The events of one state store: emit, list, and consume behind durable cursors."""

    def __init__(
        self, state: StateStore, *, clock: Clock | None = None, lease_s: float = 60.0
    ) -> None:
        self.state = state
        self.lease = timedelta(seconds=lease_s)
        self._clock = clock or _utc_now

    def _now(self) -> datetime:
        return as_utc(self._clock())

    def _engine(self) -> Engine:
        return self.state.connect_engine()

    # -- producing ------------------------------------------------------------------------

    def emit(
        self,
        type: str,
        subject: str,
        payload: dict[str, Any],
        *,
        actor: str | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Record an event; its id.

        With ``conn`` (a connection of ``state.connect_engine()`` inside a transaction)
        the event commits or rolls back with the caller's transaction.
        """
        check_type(type)
        try:
            body = json.dumps(payload, default=_json_default, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise EventError(f"payload of event {type} on {subject!r} is not JSON: {exc}") from None
        if not body.startswith("{"):
            raise EventError(f"payload of event {type} on {subject!r} must be a JSON object")
        row = {
            "type": type,
            "subject": subject,
            "payload": body,
            "actor": actor or current_user(),
            "created_at": self._now(),
        }
        if conn is not None:
            return _insert(conn, row)
        with self._engine().begin() as own:
            return _insert(own, row)

    # -- reading --------------------------------------------------------------------------

    def list(
        self,
        *,
        type: str | None = None,
        subject: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[Event]:
        """Events oldest first: the first ``limit`` after ``after_id``, else the newest ``limit``.

        ``type`` and ``subject`` match exactly, or as globs when they hold ``*`` or ``?``.
        """
        query = select(events)
        if type is not None:
            if "*" in type or "?" in type:
                check_patterns([type])
            else:
                check_type(type)
            query = query.where(_filter(events.c.type, type))
        if subject is not None:
            query = query.where(_filter(events.c.subject, subject))
        if after_id is not None:
            query = query.where(events.c.id > after_id).order_by(events.c.id).limit(limit)
        else:
            query = query.order_by(events.c.id.desc()).limit(limit)
        with self._engine().connect() as conn:
            found = [_event(row) for row in conn.execute(query)]
        return sorted(found, key=lambda event: event.id)

    def last_id(self) -> int:
        """The id of the newest event (0 when there is none)."""
        with self._engine().connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())

    def cursor(self, consumer: str) -> Cursor | None:
        """A consumer's cursor, or ``None`` before its first pass."""
        with self._engine().connect() as conn:
            row = conn.execute(
                select(event_cursors).where(event_cursors.c.consumer == consumer)
            ).first()
        return None if row is None else _cursor(row)

    def cursors(self) -> builtins.list[Cursor]:
        """Every consumer's cursor, by name."""
        with self._engine().connect() as conn:
            rows = conn.execute(select(event_cursors).order_by(event_cursors.c.consumer))
            return [_cursor(row) for row in rows]

    # -- consuming ------------------------------------------------------------------------

    def consume(
        self,
        consumer: str,
        handler: Handler,
        *,
        types: Sequence[str] | None = None,
        max_events: int | None = None,
    ) -> int:
        """Hand ``consumer``'s next events (id order, matching ``types`` globs) to ``handler``.

        The cursor moves past an event only after ``handler`` returns, so every event is
        handled at least once. When ``handler`` raises, the error is recorded, the
        consumer backs off exponentially (1 s doubling to 300 s) and this pass stops; a
        pass before ``next_attempt_at``, or while another process holds the consumer's
        lease, does nothing. A new consumer starts at the first event. Returns the number
        of events handled.
        """
        patterns = None if types is None else check_patterns(types)
        engine = self._engine()
        if not self._due(engine, consumer):
            return 0
        token = secrets.token_hex(16)
        start = self._acquire(engine, consumer, token)
        if start is None:
            return 0
        position, attempts = start
        saved, handled = position, 0
        try:
            while max_events is None or handled < max_events:
                batch = self._batch(engine, position)
                if not batch:
                    break
                for event in batch:
                    if not matches(event.type, patterns):
                        position = event.id
                        continue
                    if max_events is not None and handled >= max_events:
                        break
                    try:
                        handler(event)
                    except Exception as exc:
                        self._failed(engine, consumer, token, position, attempts + 1, exc)
                        return handled
                    position, attempts, handled = event.id, 0, handled + 1
                    if not self._advance(engine, consumer, token, position):
                        return handled  # the lease expired and another process took over
                    saved = position
            if position != saved:
                self._advance(engine, consumer, token, position)
            return handled
        finally:
            self._release(engine, consumer, token)

    def _due(self, engine: Engine, consumer: str) -> bool:
        """Cheap read first: is there anything to do, and is the consumer out of backoff?"""
        with engine.connect() as conn:
            row = conn.execute(
                select(event_cursors.c.last_event_id, event_cursors.c.next_attempt_at).where(
                    event_cursors.c.consumer == consumer
                )
            ).first()
            after = 0 if row is None else row.last_event_id
            retry_at = None if row is None else row.next_attempt_at
            if retry_at is not None and as_utc(retry_at) > self._now():
                return False
            newer = conn.execute(select(events.c.id).where(events.c.id > after).limit(1)).first()
        return newer is not None

    def _acquire(self, engine: Engine, consumer: str, token: str) -> tuple[int, int] | None:
        """Take the consumer's lease; its (last event id, attempts), or ``None`` if busy."""
        now = self._now()
        cursors = event_cursors.c
        with engine.begin() as conn:
            new = {"consumer": consumer, "last_event_id": 0, "attempts": 0, "updated_at": now}
            conn.execute(_insert_ignore(conn, new))
            taken = conn.execute(
                update(event_cursors)
                .where(
                    cursors.consumer == consumer,
                    or_(cursors.lease_until.is_(None), cursors.lease_until < now),
                    or_(cursors.next_attempt_at.is_(None), cursors.next_attempt_at <= now),
                )
                .values(lease_owner=token, lease_until=now + self.lease)
            )
            if taken.rowcount != 1:
                return None
            row = conn.execute(
                select(cursors.last_event_id, cursors.attempts).where(cursors.consumer == consumer)
            ).one()
        return int(row.last_event_id), int(row.attempts)

    def _batch(self, engine: Engine, after: int) -> builtins.list[Event]:
        with engine.connect() as conn:
            rows = conn.execute(
                select(events).where(events.c.id > after).order_by(events.c.id).limit(_BATCH)
            )
            return [_event(row) for row in rows]

    def _advance(self, engine: Engine, consumer: str, token: str, position: int) -> bool:
        now = self._now()
        with engine.begin() as conn:
            moved = conn.execute(
                _owned(consumer, token).values(
                    last_event_id=position,
                    attempts=0,
                    next_attempt_at=None,
                    last_error=None,
                    lease_until=now + self.lease,
                    updated_at=now,
                )
            )
        return moved.rowcount == 1

    def _failed(
        self,
        engine: Engine,
        consumer: str,
        token: str,
        position: int,
        attempts: int,
        exc: Exception,
    ) -> None:
        now = self._now()
        error = str(exc) if isinstance(exc, LakeforgeError) else f"{type(exc).__name__}: {exc}"
        with engine.begin() as conn:
            conn.execute(
                _owned(consumer, token).values(
                    last_event_id=position,
                    attempts=attempts,
                    next_attempt_at=now + backoff(attempts),
                    last_error=error[:_ERROR_CHARS],
                    updated_at=now,
                )
            )

    def _release(self, engine: Engine, consumer: str, token: str) -> None:
        with engine.begin() as conn:
            conn.execute(_owned(consumer, token).values(lease_owner=None, lease_until=None))


def _owned(consumer: str, token: str) -> Any:
    return update(event_cursors).where(
        event_cursors.c.consumer == consumer, event_cursors.c.lease_owner == token
    )


def _insert(conn: Connection, row: dict[str, Any]) -> int:
    if conn.dialect.name == "postgresql":
        # Emitting transactions commit one at a time, so ids become visible in order.
        conn.execute(text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))
    result = conn.execute(insert(events).values(**row))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _insert_ignore(conn: Connection, row: dict[str, Any]) -> Any:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(event_cursors).values(**row).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(event_cursors).values(**row).on_conflict_do_nothing()
    raise LakeforgeError(f"the events outbox supports SQLite and PostgreSQL, not {dialect}")


def _event(row: Any) -> Event:
    return Event(
        id=int(row.id),
        type=row.type,
        subject=row.subject,
        payload=json.loads(row.payload),
        actor=row.actor,
        created_at=as_utc(row.created_at),
    )


def _cursor(row: Any) -> Cursor:
    return Cursor(
        consumer=row.consumer,
        last_event_id=int(row.last_event_id),
        attempts=int(row.attempts),
        next_attempt_at=None if row.next_attempt_at is None else as_utc(row.next_attempt_at),
        last_error=row.last_error,
        updated_at=as_utc(row.updated_at),
    )
