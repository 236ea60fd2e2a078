"""Hot swap: notice alias moves and swap the served versions off the request path.

Two signals, both checked from one background thread: ``alias.moved`` events in the
outbox (every move made through Lakeforge: deploy, approve, rollback), read every
``event_interval_s``; and a full registry poll every ``poll_interval_s``, which also
catches aliases moved directly in MLflow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from lakeforge.events import ALIAS_MOVED, Event

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.features.online import OnlineStore
    from lakeforge.serving._entities import Entity

log = logging.getLogger("lakeforge.serving")
T = TypeVar("T")


class Watcher:
    """Keeps every entity on the version its alias points at."""

    def __init__(
        self,
        ws: Workspace,
        entities: list[Entity],
        online: Callable[[], OnlineStore],
        *,
        poll_interval_s: float,
        event_interval_s: float = 0.5,
        on_swap: Callable[[Entity], None] | None = None,
    ) -> None:
        self.ws = ws
        self.entities = entities
        self.online = online
        self.poll_interval_s = poll_interval_s
        self.event_interval_s = min(event_interval_s, poll_interval_s)
        self.on_swap = on_swap
        self.ready = threading.Event()
        self._last_event = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lakeforge-watch", daemon=True)

    def start(self) -> None:
        """Load every entity now (a worker takes no request before), then keep watching."""
        self._last_event = _safe(self.ws.events.last_id, 0)
        self.refresh()
        self._mark_ready()
        self._thread.start()

    def _mark_ready(self) -> None:
        if all(e.current is not None for e in self.entities):
            self.ready.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def refresh(self, entities: list[Entity] | None = None) -> None:
        """Bring ``entities`` (default: all) to the versions the registry names now."""
        for entity in entities if entities is not None else self.entities:
            if entity.refresh(self.ws, self.online) and self.on_swap is not None:
                self.on_swap(entity)

    def _run(self) -> None:
        outbox = self.ws.events
        next_poll = time.monotonic() + self.poll_interval_s
        while not self._stop.wait(self.event_interval_s):
            none: list[Event] = []
            moved = _safe(partial(outbox.list, type=ALIAS_MOVED, after_id=self._last_event), none)
            if moved:
                self._last_event = moved[-1].id
                subjects = {event.subject for event in moved}
                touched = [e for e in self.entities if e.model_name in subjects]
                if touched:
                    self.refresh(touched)
            if time.monotonic() >= next_poll:  # also retries entities that failed to load
                self.refresh()
                next_poll = time.monotonic() + self.poll_interval_s
            self._mark_ready()


def _safe(call: Callable[[], T], default: T) -> T:
    try:
        return call()
    except Exception:
        log.exception("watching the registry failed; retrying")
        return default
