"""What the conformance checks share: unique names, an opened state store, racing threads."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from lakeforge.state import StateStore

WAIT_S = 60  # a generous bound on waiting for a racing thread or process
RACERS = 4
ROUNDS = 3  # races are run several times, so a lucky interleaving does not hide a bug


def unique_name(what: str) -> str:
    """A name no other check (or run) uses, so checks can share one database."""
    return f"conformance-{what}-{uuid.uuid4().hex[:10]}"


@contextmanager
def opened_store(url: str) -> Iterator[StateStore]:
    """The state store at ``url``, migrated to head, disposed of afterwards."""
    store = StateStore(url)
    try:
        store.migrate()
        yield store
    finally:
        store.dispose()


def race(racer: Callable[[int], Any], n: int = RACERS) -> list[Any]:
    """Run ``racer(0..n-1)`` in threads released at once; their results, or the first error."""
    start = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(timeout=WAIT_S)
            results[index] = racer(index)
        except BaseException as exc:  # reported by the calling thread
            start.abort()
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:  # the first real error, rather than a barrier it broke
        raise sorted(errors, key=lambda e: isinstance(e, threading.BrokenBarrierError))[0]
    return results


class Abort(Exception):
    """Raised inside a transaction to roll it back."""
