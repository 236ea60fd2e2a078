"""The response cache of non-streamed requests: per serving process, bounded, with a TTL.

The key is the route, the prompt version and the canonical JSON of the body sent
upstream (the filled system message included, so prompt variables are part of it); the
OpenAI ``user`` field is not (it does not change the answer).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache


class ResponseCache:
    """Responses by key, at most ``max_entries``, each for ``ttl_s`` seconds."""

    def __init__(
        self, ttl_s: float, max_entries: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: TTLCache[str, dict[str, Any]] = TTLCache(
            maxsize=max_entries, ttl=ttl_s, timer=clock
        )

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(
        route: str, prompt: str | None, body: dict[str, Any], serving: str | None = None
    ) -> str:
        """The entry of a request: its route, prompt version and parameters, and the model
        version the route serves when it can change under the same name (``serving``)."""
        params = {k: v for k, v in body.items() if k != "user"}
        text = json.dumps(
            [route, prompt, params, serving],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        found = self._entries.get(key)
        return None if found is None else copy.deepcopy(found)

    def put(self, key: str, response: dict[str, Any]) -> None:
        self._entries[key] = copy.deepcopy(response)
