"""Arrow <-> JSON conversion shared by every online store backend.

Values are stored as JSON-native scalars. Types JSON cannot carry are mapped to a storage
form (temporal types to their integer counts, decimals to strings, binary to base64) and
rebuilt from the Arrow schema saved with each table, so reads return correctly typed columns.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa

from lakeforge.errors import LakeforgeError, SchemaMismatchError
from lakeforge.lakehouse import type_kind

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class OnlineStoreError(LakeforgeError):
    """A failure of the online feature store."""


class UnknownFeatureError(OnlineStoreError):
    """A read that asked for a feature the table does not have."""


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid table or namespace name, else raise."""
    if not _NAME.fullmatch(name):
        raise OnlineStoreError(
            f"invalid online {kind} name {name!r}",
            hint="use letters, digits, '_', '.' or '-' (no ':' or spaces)",
        )
    return name


@dataclass(frozen=True)
class TableSpec:
    """What an online table stores: its key columns, timestamp column and features."""

    name: str
    schema: pa.Schema  # key fields, then the timestamp field (if any), then feature fields
    keys: tuple[str, ...]
    timestamp: str | None
    features: tuple[str, ...]

    def to_json(self) -> str:
        """Serialize for a backend's metadata table."""
        return json.dumps(
            {
                "keys": list(self.keys),
                "timestamp": self.timestamp,
                "features": list(self.features),
                "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode(),
            }
        )

    @classmethod
    def from_json(cls, name: str, text: str | bytes) -> TableSpec:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(data["schema"])))
        return cls(
            name=name,
            schema=schema,
            keys=tuple(data["keys"]),
            timestamp=data["timestamp"],
            features=tuple(data["features"]),
        )


@dataclass(frozen=True)
class Record:
    """One row to upsert: encoded key, event time in µs (None: no timestamp), JSON values."""

    key: str
    ts: int | None
    values: dict[str, Any]


@dataclass(frozen=True)
class Stored:
    """One stored row: event time and write time in µs, JSON values by feature."""

    ts: int | None
    written: int
    values: dict[str, Any]


# -- values -------------------------------------------------------------------------------


def _storage_type(t: pa.DataType) -> pa.DataType | None:
    if pa.types.is_date32(t) or pa.types.is_time32(t):
        return pa.int32()
    if pa.types.is_temporal(t):  # timestamp, date64, time64, duration
        return pa.int64()
    return None


def to_json_values(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """Convert an Arrow column to JSON-native Python values."""
    t = column.type
    storage = _storage_type(t)
    if storage is not None:
        return list(column.cast(storage).to_pylist())
    values = column.to_pylist()
    if pa.types.is_decimal(t):
        return [None if v is None else str(v) for v in values]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return [None if v is None else base64.b64encode(v).decode() for v in values]
    return list(values)


def needs_conversion(t: pa.DataType) -> bool:
    """Whether values of type ``t`` are stored in another form than Arrow's own Python values."""
    return (
        _storage_type(t) is not None
        or pa.types.is_decimal(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
    )


def from_json_values(values: Sequence[Any], t: pa.DataType) -> pa.Array:
    """Inverse of :func:`to_json_values` for a column of type ``t``."""
    storage = _storage_type(t)
    if storage is not None:
        return pa.array(values, type=storage).cast(t)
    if pa.types.is_decimal(t):
        return pa.array([None if v is None else Decimal(v) for v in values], type=t)
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.array([None if v is None else base64.b64decode(v) for v in values], type=t)
    return pa.array(values, type=t)


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_key(values: Sequence[Any]) -> str:
    """Deterministic text form of one key: a compact JSON list."""
    return _compact(list(values))


# -- validation ---------------------------------------------------------------------------


def _require_columns(table: pa.Table, columns: Sequence[str], what: str) -> None:
    for name in columns:
        if name not in table.column_names:
            raise SchemaMismatchError(
                f"{what} column {name!r} is missing",
                hint=f"the columns are {sorted(table.column_names)}",
            )


def cast_column(column: pa.ChunkedArray, name: str, to: pa.DataType) -> pa.ChunkedArray:
    """``column`` cast to the stored type ``to``, or a clear error naming the column."""
    if column.type == to:
        return column
    try:
        return column.cast(to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SchemaMismatchError(
            f"column {name!r} has type {column.type}, the online table stores {to}"
        ) from exc


def spec_for_write(
    table: str,
    rows: pa.Table,
    *,
    keys: Sequence[str],
    timestamp: str | None,
    features: Sequence[str],
) -> TableSpec:
    """Validate a write's arguments against ``rows`` and describe the table they imply."""
    if not keys:
        raise SchemaMismatchError(f"online table {table!r}: at least one key column is needed")
    names = [*keys, *([timestamp] if timestamp else []), *features]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaMismatchError(
            f"online table {table!r}: column(s) {duplicates} are given more than once "
            "among keys, timestamp and features"
        )
    _require_columns(rows, keys, "key")
    _require_columns(rows, features, "feature")
    if timestamp is not None:
        _require_columns(rows, [timestamp], "timestamp")
        if not pa.types.is_timestamp(rows.schema.field(timestamp).type):
            raise SchemaMismatchError(
                f"timestamp column {timestamp!r} has type "
                f"{rows.schema.field(timestamp).type}, expected a timestamp"
            )
    return TableSpec(
        name=table,
        schema=pa.schema([rows.schema.field(n) for n in names]),
        keys=tuple(keys),
        timestamp=timestamp,
        features=tuple(features),
    )


def check_compatible(new: TableSpec, stored: TableSpec) -> None:
    """Raise unless a write described by ``new`` fits the table ``stored`` describes."""
    where = f"online table {stored.name!r}"
    if new.keys != stored.keys:
        raise SchemaMismatchError(
            f"{where} is keyed by {list(stored.keys)}, the write uses {list(new.keys)}"
        )
    if new.timestamp != stored.timestamp:
        raise SchemaMismatchError(
            f"{where} has timestamp column {stored.timestamp!r}, the write uses {new.timestamp!r}"
        )
    if set(new.features) != set(stored.features):
        missing = sorted(set(stored.features) - set(new.features))
        extra = sorted(set(new.features) - set(stored.features))
        raise SchemaMismatchError(
            f"{where}: the write's features differ (missing {missing}, unknown {extra})",
            hint=f"the table's features are {list(stored.features)}",
        )


def records_for_write(rows: pa.Table, spec: TableSpec) -> list[Record]:
    """Encode ``rows`` for ``spec``: one record per key, the newest row of each (ties: last)."""
    columns = {f.name: cast_column(rows.column(f.name), f.name, f.type) for f in spec.schema}
    for name in spec.keys:
        if columns[name].null_count:
            raise SchemaMismatchError(f"key column {name!r} has null values")
    key_values = [to_json_values(columns[n]) for n in spec.keys]
    keys = [encode_key(k) for k in zip(*key_values, strict=True)]
    ts: list[int | None]
    if spec.timestamp is None:
        ts = [None] * rows.num_rows
    else:
        column = columns[spec.timestamp]
        if column.null_count:
            raise SchemaMismatchError(f"timestamp column {spec.timestamp!r} has null values")
        micros = column.cast(pa.timestamp("us", tz=column.type.tz), safe=False)
        ts = micros.cast(pa.int64()).to_pylist()
    feature_values = {n: to_json_values(columns[n]) for n in spec.features}
    newest: dict[str, int] = {}
    for i, (key, t) in enumerate(zip(keys, ts, strict=True)):
        j = newest.get(key)
        old = None if j is None else ts[j]
        if old is None or t is None or t >= old:
            newest[key] = i
    return [
        Record(keys[i], ts[i], {n: feature_values[n][i] for n in spec.features})
        for i in newest.values()
    ]


def _kind(t: pa.DataType) -> str:
    """A key's type family; naive and zoned timestamps are one (naive ones are UTC)."""
    kind = type_kind(t)
    return "timestamp" if kind == "timestamp_tz" else kind


def check_key_columns(spec: TableSpec, key_schema: pa.Schema, keys: Sequence[str]) -> None:
    """Raise unless a keys table of ``key_schema`` holds ``spec``'s keys in fitting types."""
    if set(keys) != set(spec.keys) or len(keys) != len(spec.keys):
        raise SchemaMismatchError(
            f"online table {spec.name!r} is keyed by {list(spec.keys)}, got {list(keys)}"
        )
    for name in spec.keys:
        if name not in key_schema.names:
            raise SchemaMismatchError(
                f"key column {name!r} is missing",
                hint=f"the columns are {sorted(key_schema.names)}",
            )
        have, want = key_schema.field(name).type, spec.schema.field(name).type
        if _kind(have) != _kind(want) and not pa.types.is_null(have):
            raise SchemaMismatchError(
                f"key column {name!r} has type {have}, the online table {spec.name!r} stores {want}"
            )


def keys_for_read(keys_table: pa.Table, keys: Sequence[str], spec: TableSpec) -> list[str]:
    """Encode the key rows of ``keys_table`` in ``spec``'s key order and types."""
    check_key_columns(spec, keys_table.schema, keys)
    key_values = [
        to_json_values(cast_column(keys_table.column(n), n, spec.schema.field(n).type))
        for n in spec.keys
    ]
    return [encode_key(k) for k in zip(*key_values, strict=True)]


def check_features(spec: TableSpec, features: Sequence[str] | None) -> list[str]:
    """Return the requested features (all when None), raising on an unknown one."""
    if features is None:
        return list(spec.features)
    for name in features:
        if name not in spec.features:
            raise UnknownFeatureError(
                f"online table {spec.name!r} has no feature {name!r}",
                hint=f"the known features are {list(spec.features)}",
            )
    return list(features)
