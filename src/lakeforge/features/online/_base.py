"""The online store contract: the latest feature row per key, looked up in batches.

:class:`OnlineStore` validates arguments and converts Arrow data once, here; a backend
implements the few primitives below it (``_get_spec``, ``_put_spec``, ``_upsert``,
``_fetch``, ``_delete``, ``tables``, ``_drop``, ``close``) and must pass
``lakeforge.testing.check_online_store`` (the public conformance suite).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import pyarrow as pa

from lakeforge.errors import LakeforgeError, TableNotFoundError
from lakeforge.features.online._codec import (
    OnlineStoreError,
    Record,
    Stored,
    TableSpec,
    check_compatible,
    check_name,
    keys_for_read,
    records_for_write,
    spec_for_write,
)
from lakeforge.features.online._reads import ReadPlan, ReadPlans, RowsPlan

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Given a table's spec, the encoded keys and the feature names a read asks for.
ReadRequest = Callable[[TableSpec], tuple[list[str], list[str]]]
#: Given the stored spec text a reader holds, that spec, the encoded keys and the features:
#: their rows in one round trip, or None when the stored spec is no longer that text.
CheckedFetch = Callable[[str | bytes, TableSpec, list[str], list[str]], list[Stored | None] | None]


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # naive datetimes are read as UTC, like naive timestamp columns
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def now_micros() -> int:
    """The current time in µs since the epoch (a row's write time)."""
    return time.time_ns() // 1_000


class OnlineStore(abc.ABC):
    """Latest feature values per entity key, for low-latency serving.

    Per key only the row with the newest timestamp is kept: an older, late-arriving row
    never overwrites a newer one (on a tie the later write wins); without a timestamp
    column the last write wins. Each table's Arrow schema is stored with it, so reads
    return the types that were written. Use as a context manager or call :meth:`close`.
    """

    namespace: str

    # -- public API -----------------------------------------------------------------------

    def write(
        self,
        table: str,
        rows: pa.Table,
        *,
        keys: list[str],
        timestamp: str | None,
        features: list[str],
    ) -> int:
        """Upsert ``rows`` into ``table`` (created on first write); return the keys changed.

        The first write fixes the table's keys, timestamp column and feature types; later
        writes must use the same names (values are cast to the stored types). One call is
        atomic where the backend allows it.
        """
        check_name("table", table)
        spec = spec_for_write(table, rows, keys=keys, timestamp=timestamp, features=features)
        stored = self._put_spec(spec)
        check_compatible(spec, stored)
        records = records_for_write(rows, stored)
        if not records:
            return 0
        return self._upsert(stored, records, now_micros())

    def read(
        self,
        table: str,
        keys_table: pa.Table,
        *,
        keys: list[str],
        features: list[str] | None = None,
        ttl: timedelta | None = None,
        now: datetime | None = None,
    ) -> pa.Table:
        """Look up many keys in one call.

        Returns the key columns of ``keys_table`` and the requested features (all when
        ``features`` is None), one row per row of ``keys_table`` in the same order. Values
        are null where the key is missing, or where the stored row's timestamp (its write
        time, for tables without a timestamp column) is older than ``ttl`` before ``now``
        (default: the current time; naive datetimes are UTC).
        """

        plan: ReadPlan | None = None

        def request(spec: TableSpec) -> tuple[list[str], list[str]]:
            nonlocal plan
            plan = self._plans().for_table(spec, keys_table.schema, keys, features)
            return plan.encode(keys_table), plan.names

        columns = self._read_columns(table, request, ttl, now)
        assert plan is not None  # _read calls request before it returns
        return plan.result(keys_table, columns)

    def lookup(
        self,
        table: str,
        rows: Sequence[Mapping[str, Any]],
        *,
        features: list[str] | None = None,
        ttl: timedelta | None = None,
        now: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`read` for keys given as Python rows, with Python values out (no Arrow).

        ``rows`` map each key column of the table to a value (other entries are ignored);
        the result has one dict per row, in order: its key values, then the requested
        features (None where the key is missing or older than ``ttl``), valued as Arrow's
        ``to_pylist`` gives them. The cheap path for a few keys, as a request handler has.
        """
        plan: RowsPlan | None = None

        def request(spec: TableSpec) -> tuple[list[str], list[str]]:
            nonlocal plan
            plan = self._plans().for_rows(spec, features)
            return plan.encode(rows), plan.names

        columns = self._read_columns(table, request, ttl, now)
        assert plan is not None  # _read calls request before it returns
        return plan.result(rows, columns)

    def _plans(self) -> ReadPlans:
        # kept on the instance without an __init__, which backends need not call
        plans = self.__dict__.get("_read_plans")
        if plans is None:
            plans = self.__dict__["_read_plans"] = ReadPlans()
        return plans

    def _read_columns(
        self, table: str, request: ReadRequest, ttl: timedelta | None, now: datetime | None
    ) -> list[list[Any]]:
        """The stored JSON values of each requested feature, None where missing or expired."""
        _, names, found = self._read(check_name("table", table), request)
        if ttl is not None:
            cutoff = _micros(now or datetime.now(UTC)) - ttl // timedelta(microseconds=1)
            found = [
                None if row is None or (row.written if row.ts is None else row.ts) < cutoff else row
                for row in found
            ]
        return [[None if row is None else row.values.get(name) for row in found] for name in names]

    def delete(self, table: str, keys_table: pa.Table, *, keys: list[str]) -> int:
        """Delete the rows of the given keys; return how many existed."""
        spec = self._require_spec(table)
        encoded = list(dict.fromkeys(keys_for_read(keys_table, keys, spec)))
        return self._delete(spec, encoded) if encoded else 0

    def drop(self, table: str) -> None:
        """Delete ``table`` and all its rows."""
        self._drop(self._require_spec(table).name)

    @abc.abstractmethod
    def tables(self) -> list[str]:
        """The names of the tables in this store's namespace, sorted."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- backend primitives ---------------------------------------------------------------

    @abc.abstractmethod
    def _get_spec(self, table: str) -> TableSpec | None:
        """The stored spec of ``table``, or None when it does not exist."""

    @abc.abstractmethod
    def _put_spec(self, spec: TableSpec) -> TableSpec:
        """Store ``spec`` unless the table exists (atomically); return the stored spec."""

    @abc.abstractmethod
    def _upsert(self, spec: TableSpec, records: Sequence[Record], written: int) -> int:
        """Write each record unless its key holds a newer ``ts``; return the count written.

        A record replaces the stored row when either has no ``ts`` or ``record.ts >=
        stored.ts``. All records of one call are applied atomically where possible.
        """

    @abc.abstractmethod
    def _fetch(
        self, spec: TableSpec, keys: Sequence[str], features: Sequence[str]
    ) -> list[Stored | None]:
        """The stored rows of ``keys`` (None where missing), in order, in one round trip."""

    def _read(
        self, table: str, request: ReadRequest
    ) -> tuple[TableSpec, list[str], list[Stored | None]]:
        """The spec of ``table``, and the rows of the (keys, features) ``request(spec)`` gives.

        By default the spec is read, then the rows; a backend may override this to do
        both in one round trip (validating a cached spec).
        """
        spec = self._require_spec(table)
        keys, names = request(spec)
        return spec, names, (self._fetch(spec, keys, names) if keys else [])

    @abc.abstractmethod
    def _delete(self, spec: TableSpec, keys: Sequence[str]) -> int:
        """Delete the rows of distinct ``keys``; return how many existed."""

    @abc.abstractmethod
    def _drop(self, table: str) -> None:
        """Delete an existing table's rows and spec."""

    def _read_checked(
        self, table: str, request: ReadRequest, fetch: CheckedFetch
    ) -> tuple[TableSpec, list[str], list[Stored | None]]:
        """``_read`` in one round trip: ``fetch`` the rows while checking the cached spec.

        The spec last seen is used (read first when none is); when ``fetch`` finds the
        stored spec changed (a drop, or a drop and a new schema, by another store), the
        spec is read again and the request made anew.
        """
        cache: dict[str, tuple[str | bytes, TableSpec]] = self.__dict__.setdefault("_specs", {})
        for _ in range(3):
            cached = cache.get(table)
            if cached is None:
                self._require_spec(table)
                cached = cache[table]
            text, spec = cached
            try:
                keys, names = request(spec)
            except LakeforgeError:
                if self._get_spec(table) == spec:  # the request is wrong, not the cache
                    raise
                cache.pop(table, None)
                continue
            found = fetch(text, spec, keys, names)
            if found is not None:
                return spec, names, found
            cache.pop(table, None)  # recreated or dropped meanwhile: read the spec again
        raise OnlineStoreError(f"online table {table!r} kept changing while being read")

    def _parse_spec(self, table: str, text: str | bytes) -> TableSpec:
        """``TableSpec.from_json``, parsed once per distinct stored text (and cached)."""
        # kept on the instance without an __init__, which backends need not call
        cache: dict[str, tuple[str | bytes, TableSpec]] = self.__dict__.setdefault("_specs", {})
        found = cache.get(table)
        if found is not None and found[0] == text:
            return found[1]
        spec = TableSpec.from_json(table, text)
        cache[table] = (text, spec)
        return spec

    def _require_spec(self, table: str) -> TableSpec:
        spec = self._get_spec(check_name("table", table))
        if spec is None:
            raise TableNotFoundError(
                f"online table {table!r} does not exist in namespace {self.namespace!r}",
                hint=f"the tables are {self.tables()}",
            )
        return spec
