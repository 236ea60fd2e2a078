"""Run one sync of ``gold.hash_index`` and kill -9 this process at a given point.

``python crash_sync.py PROJECT POINT``; POINT is one of embedded, merged, indexed,
tagged, or none (no crash).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import lakeforge
import tests.vectors.hash_embedder  # noqa: F401  (registers the model)
from lakeforge.vectors import _sync


def _die(*_: Any, **__: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _after(fn: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        fn(*args, **kwargs)
        _die()

    return wrapped


def main(project: str, point: str) -> None:
    _sync.LEASE_S = 2.0  # a killed run frees the index quickly (the rerun waits for it)
    if point == "embedded":
        _sync._apply = _die  # type: ignore[assignment]
    elif point == "merged":
        _sync._apply = _after(_sync._apply)  # type: ignore[assignment]
    elif point == "indexed":
        _sync._build_indexes = _after(_sync._build_indexes)  # type: ignore[assignment]
    elif point == "tagged":
        _sync.add_pin = _die  # type: ignore[assignment]
    with lakeforge.connect("dev", project_dir=project) as ws:
        result = ws.vectors.sync("gold.hash_index")
    print(f"synced {result.delta_version} {result.upserted} {result.deleted}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
