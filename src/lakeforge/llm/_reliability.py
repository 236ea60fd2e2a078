"""Retries with exponential backoff and jitter, and a circuit breaker per route."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]
MAX_BACKOFF_S = 8.0
MAX_RETRY_AFTER_S = 30.0


class CircuitBreaker:
    """Open after ``failures`` consecutive failures; after ``reset_s`` let one trial call
    through (half-open): its success closes the breaker, its failure opens it again.

    One per route and serving process (each worker learns on its own).
    """

    def __init__(
        self, failures: int, reset_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may go to the route now (half-open: one trial at a time)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        self._consecutive += 1
        if self._trial or self._consecutive >= self.failures:
            self._opened_at = self._clock()
        self._trial = False

    def release(self) -> None:
        """A call let through ended without telling success or failure (a client error)."""
        self._trial = False


def backoff_s(
    retry: int, base_s: float, retry_after_s: float | None, *, rng: random.Random | None = None
) -> float:
    """The delay before retry number ``retry`` (0-based): the upstream's ``Retry-After``
    when it sent one (capped at 30 s), else ``base_s * 2**retry`` (capped at 8 s) times a
    random factor in [0.5, 1.5) so that clients retrying together spread out."""
    if retry_after_s is not None:
        return min(retry_after_s, MAX_RETRY_AFTER_S)
    jitter = 0.5 + (rng or random).random()
    return min(base_s * 2**retry, MAX_BACKOFF_S) * jitter
