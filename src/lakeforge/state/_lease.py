"""Named, expiring leases in the state store: one holder at a time, kept by a heartbeat.

A lease is a row of ``leases`` (name, owner, until). It is taken when no row exists or
the row has expired, renewed only by its owner, and given up by expiring it. A holder
that dies stops renewing, so its lease expires and the next one may take over; a live
holder's lease is never taken. Same rules as the scheduler's ``scheduler`` lease.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from lakeforge.state._schema import leases
from lakeforge.state._store import StateStore, as_utc

Clock = Callable[[], datetime]
_EXPIRED = datetime(1970, 1, 1, tzinfo=UTC)


def process_owner() -> str:
    """An owner name that says where the holder runs: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, and until when (UTC) unless renewed."""

    owner: str
    until: datetime

    def describe(self) -> str:
        host, _, rest = self.owner.partition(":")
        pid = rest.partition(":")[0]
        who = f"pid {pid} on host {host}" if pid.isdigit() else f"owner {self.owner}"
        return f"{who} (lease held until {self.until.isoformat(timespec='seconds')})"


class Lease:
    """The lease ``name`` in a state store, taken for ``owner``."""

    def __init__(
        self,
        state: StateStore,
        name: str,
        *,
        duration: timedelta,
        owner: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.state = state
        self.name = name
        self.duration = duration
        self.owner = owner or process_owner()
        self.clock = clock or (lambda: datetime.now(UTC))

    def acquire(self) -> bool:
        """Take or renew the lease; False while another owner holds it unexpired."""
        now, engine = as_utc(self.clock()), self.state.connect_engine()
        with engine.begin() as conn:
            renewed = conn.execute(
                update(leases)
                .where(leases.c.name == self.name)
                .where((leases.c.owner == self.owner) | (leases.c.until < now))
                .values(owner=self.owner, until=now + self.duration)
            ).rowcount
        if renewed:
            return True
        try:
            with engine.begin() as conn:
                conn.execute(
                    insert(leases).values(
                        name=self.name, owner=self.owner, until=now + self.duration
                    )
                )
            return True
        except IntegrityError:
            return False

    def renew(self) -> bool:
        """Extend a lease this owner holds; False when it is no longer ours."""
        now = as_utc(self.clock())
        with self.state.connect_engine().begin() as conn:
            return bool(
                conn.execute(
                    update(leases)
                    .where(leases.c.name == self.name, leases.c.owner == self.owner)
                    .where(leases.c.until >= now)
                    .values(until=now + self.duration)
                ).rowcount
            )

    def release(self) -> None:
        """Give the lease up (if still ours) so the next holder need not wait."""
        with self.state.connect_engine().begin() as conn:
            conn.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.owner == self.owner)
                .values(until=_EXPIRED)
            )

    def holder(self) -> Holder | None:
        """The current holder, or None when the lease is free (absent or expired)."""
        with self.state.connect_engine().connect() as conn:
            row = conn.execute(select(leases).where(leases.c.name == self.name)).first()
        if row is None or as_utc(row.until) < as_utc(self.clock()):
            return None
        return Holder(row.owner, as_utc(row.until))


class Heartbeat:
    """Renews a held lease every third of its duration in a background thread.

    ``lost`` is set when a renewal finds the lease gone (it expired while this process
    stalled, and someone else may have taken it); on exit the lease is released.
    """

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"lakeforge-lease-{lease.name}", daemon=True
        )

    def _beat(self) -> None:
        interval = self.lease.duration.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                held = self.lease.renew()
            except SQLAlchemyError:  # a state store hiccup: try again at the next beat
                continue
            if not held:
                self.lost.set()
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if not self.lost.is_set():
            self.lease.release()
