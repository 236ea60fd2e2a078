"""The index's checkpoint and pins, kept as tags of its LanceDB table.

- ``delta-<N>`` tags the index version that reflects version N of the source table. It is
  written after the data it describes, so it never runs ahead of the data: the highest
  N is where the next sync starts.
- ``pin-<SEQ>`` tags the version search reads: the pin with the highest sequence number.
  Every pin (and rollback) adds one, so the tags are also the pin history.

Tagged versions are kept when LanceDB cleans up old versions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from lakeforge.vectors._store import (
    IndexRef,
    VectorIndexError,
    not_synced,
    open_table,
    open_version,
    resolve,
)

if TYPE_CHECKING:
    from lancedb.table import Table

    from lakeforge._workspace import Workspace

DELTA_TAG = "delta-"
PIN_TAG = "pin-"
PIN_TTL_S = 1.0  # how long a process trusts the pin it read (serving notices a re-pin)
_PINNED: dict[tuple[str, str], tuple[float, int | None]] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class HistoryEntry:
    """One synced version of an index."""

    index_version: int
    delta_version: int
    rows: int
    time: datetime
    pinned: bool


def _tagged(table: Table, prefix: str) -> list[tuple[int, int]]:
    """(number after the prefix, index version) of the tags with ``prefix``, ascending."""
    found: list[tuple[int, int]] = []
    tags: dict[str, Any] = table.tags.list()
    for tag, info in tags.items():
        number = tag.removeprefix(prefix)
        if tag.startswith(prefix) and number.isdigit():
            found.append((int(number), int(info["version"])))
    return sorted(found)


def synced_delta_version(table: Table) -> int | None:
    """The source version the index last reflected (None: never synced)."""
    tags = _tagged(table, DELTA_TAG)
    return tags[-1][0] if tags else None


def record_sync(table: Table, delta_version: int) -> None:
    """Tag the table's current version as reflecting source version ``delta_version``.

    Tags of later source versions go: the source was recreated, its versions start over.
    """
    for later, _ in _tagged(table, DELTA_TAG):
        if later > delta_version:
            table.tags.delete(f"{DELTA_TAG}{later}")
    tag = f"{DELTA_TAG}{delta_version}"
    if tag in table.tags.list():
        table.tags.update(tag, table.version)
    else:
        table.tags.create(tag, table.version)


def pin_history(table: Table) -> list[int]:
    """The pinned versions, oldest pin first (the last one is the current pin)."""
    return [version for _, version in _tagged(table, PIN_TAG)]


def add_pin(ref: IndexRef, table: Table, version: int) -> None:
    """Pin ``version`` (a new ``pin-`` tag; a concurrent pin takes the next number)."""
    for _ in range(20):
        pins = _tagged(table, PIN_TAG)
        if pins and pins[-1][1] == version:
            break
        try:
            table.tags.create(f"{PIN_TAG}{(pins[-1][0] if pins else 0) + 1:08d}", version)
            break
        except (ValueError, RuntimeError, OSError):  # another process took that number
            continue
    with _LOCK:
        _PINNED[(ref.uri, ref.table)] = (time.monotonic() + PIN_TTL_S, version)


def pinned_version(ref: IndexRef) -> int | None:
    """The version search reads (re-read at most every ``PIN_TTL_S`` seconds)."""
    key = (ref.uri, ref.table)
    with _LOCK:
        cached = _PINNED.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    table = open_table(ref)
    pins = [] if table is None else pin_history(table)
    version = pins[-1] if pins else None
    with _LOCK:
        _PINNED[key] = (time.monotonic() + PIN_TTL_S, version)
    return version


def _table(ws: Workspace, name: str) -> tuple[IndexRef, Table]:
    ref = resolve(ws, name)
    table = open_table(ref)
    if table is None:
        raise not_synced(ref)
    return ref, table


def pin(ws: Workspace, name: str, version: int) -> int:
    """Make search read ``version`` of the index; the version pinned before."""
    ref, table = _table(ws, name)
    versions = {int(v["version"]) for v in table.list_versions()}
    if version not in versions:
        synced = [v for _, v in _tagged(table, DELTA_TAG)]
        raise VectorIndexError(
            f"vector index {ref.qualified} has no version {version} "
            f"(synced versions: {', '.join(map(str, synced)) or 'none'})"
        )
    pins = pin_history(table)
    add_pin(ref, table, version)
    return pins[-1] if pins else version


def rollback(ws: Workspace, name: str) -> int:
    """Pin the version pinned before the current one; the version now pinned."""
    ref, table = _table(ws, name)
    pins = pin_history(table)
    earlier = [v for v in pins if v != (pins[-1] if pins else None)]
    if not earlier:
        raise VectorIndexError(
            f"vector index {ref.qualified} has no earlier pin to roll back to "
            f"(pins: {', '.join(map(str, pins)) or 'none'})"
        )
    add_pin(ref, table, earlier[-1])
    return earlier[-1]


def history(ws: Workspace, name: str) -> list[HistoryEntry]:
    """Each synced version, newest first: index and source versions, rows, time, pinned."""
    ref, table = _table(ws, name)
    times = {int(v["version"]): v["timestamp"] for v in table.list_versions()}
    pins = pin_history(table)
    current = pins[-1] if pins else None
    entries = [
        HistoryEntry(
            index_version=version,
            delta_version=delta,
            rows=open_version(ref, version).count_rows(),
            time=times[version],
            pinned=version == current,
        )
        for delta, version in _tagged(table, DELTA_TAG)
        if version in times
    ]
    return entries[::-1]
