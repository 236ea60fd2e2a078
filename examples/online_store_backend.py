"""A third-party online store in one module, checked by Lakeforge's public suite.

Rows live in this process's memory, shared by every store the builder opens (like
connections to one server). Installed with an entry point, ``memory://`` URIs open it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from lakeforge.features.online import OnlineStore, Record, Stored, TableSpec
from lakeforge.testing import check_online_store, online_store_checks

_LOCK = threading.Lock()
_SPECS: dict[tuple[str, str], str] = {}  # (namespace, table) -> the table's spec as JSON
_ROWS: dict[tuple[str, str], dict[str, Stored]] = {}  # (namespace, table) -> rows by key


class MemoryOnlineStore(OnlineStore):
    """The latest row per key in a dict; the base class validates and converts."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def tables(self) -> list[str]:
        with _LOCK:
            return sorted(name for space, name in _SPECS if space == self.namespace)

    def close(self) -> None:
        pass

    def _get_spec(self, table: str) -> TableSpec | None:
        with _LOCK:
            text = _SPECS.get((self.namespace, table))
        return None if text is None else self._parse_spec(table, text)

    def _put_spec(self, spec: TableSpec) -> TableSpec:
        with _LOCK:
            text = _SPECS.setdefault((self.namespace, spec.name), spec.to_json())
        return self._parse_spec(spec.name, text)

    def _upsert(self, spec: TableSpec, records: Sequence[Record], written: int) -> int:
        changed = 0
        with _LOCK:
            rows = _ROWS.setdefault((self.namespace, spec.name), {})
            for record in records:
                old = rows.get(record.key)
                if old is None or old.ts is None or record.ts is None or record.ts >= old.ts:
                    rows[record.key] = Stored(record.ts, written, record.values)
                    changed += 1
        return changed

    def _fetch(
        self, spec: TableSpec, keys: Sequence[str], features: Sequence[str]
    ) -> list[Stored | None]:
        with _LOCK:
            rows = _ROWS.get((self.namespace, spec.name), {})
            return [rows.get(key) for key in keys]

    def _delete(self, spec: TableSpec, keys: Sequence[str]) -> int:
        with _LOCK:
            rows = _ROWS.get((self.namespace, spec.name), {})
            return sum(rows.pop(key, None) is not None for key in keys)

    def _drop(self, table: str) -> None:
        with _LOCK:
            _SPECS.pop((self.namespace, table), None)
            _ROWS.pop((self.namespace, table), None)


def open_memory_store(uri: str, namespace: str) -> OnlineStore:
    """The entry point: ``open_online_store("memory://", namespace=...)`` calls it."""
    return MemoryOnlineStore(namespace)


if __name__ == "__main__":
    check_online_store(lambda: open_memory_store("memory://", "conformance"))
    print(f"memory:// passed all {len(list(online_store_checks()))} online store checks")
