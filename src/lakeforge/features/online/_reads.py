"""Read plans: a read's checks and conversions, worked out once per table spec and key schema.

A serving process reads the same table with the same key columns and features again and
again; validating the key columns, choosing each column's encoder and decoder and building
the output schema happen once here, so a read only encodes its keys and decodes its values.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa

from lakeforge.errors import SchemaMismatchError
from lakeforge.features.online._codec import (
    TableSpec,
    cast_column,
    check_features,
    check_key_columns,
    from_json_values,
    needs_conversion,
    to_json_values,
)

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# the C string escaper behind ``_compact`` (ensure_ascii=False): one JSON string literal
_string = json.encoder.encode_basestring

Encode = Callable[[pa.Table], list[str]]
Decode = Callable[[list[Any]], pa.Array]


def _fragment(t: pa.DataType) -> Callable[[Any], str]:
    """How one key value of storage type ``t`` is written inside ``encode_key``'s JSON list."""
    if pa.types.is_integer(t):
        return lambda v: "null" if v is None else str(int(v))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return lambda v: "null" if v is None else str(_string(v))
    return lambda v: str(_compact(v))


def _encoder(spec: TableSpec, key_schema: pa.Schema) -> Encode:
    """Encode a keys table's rows as ``encode_key`` does, in ``spec``'s key order and types."""
    fields = [spec.schema.field(name) for name in spec.keys]
    # plain when the keys come in the stored type and are stored as Arrow's Python values
    plain = [
        key_schema.field(f.name).type == f.type and not needs_conversion(f.type) for f in fields
    ]

    def values(keys_table: pa.Table, i: int) -> list[Any]:
        f = fields[i]
        column = keys_table.column(f.name)
        if plain[i]:
            return list(column.to_pylist())
        return to_json_values(cast_column(column, f.name, f.type))

    fragments = [_fragment(f.type) for f in fields]
    if len(fields) == 1:
        one = fragments[0]
        return lambda keys_table: ["[" + one(v) + "]" for v in values(keys_table, 0)]

    def encode(keys_table: pa.Table) -> list[str]:
        columns = [[fr(v) for v in values(keys_table, i)] for i, fr in enumerate(fragments)]
        return ["[" + ",".join(parts) + "]" for parts in zip(*columns, strict=True)]

    return encode


def _decoder(t: pa.DataType) -> Decode:
    if needs_conversion(t):
        return partial(from_json_values, t=t)
    return partial(pa.array, type=t)


def _key_error(spec: TableSpec, f: pa.Field, value: Any) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"key column {f.name!r} has value {value!r} ({type(value).__name__}), the online "
        f"table {spec.name!r} stores {f.type}"
    )


def _python_fragment(spec: TableSpec, f: pa.Field) -> Callable[[Any], str]:
    """``_fragment`` for a Python key value, checked against the stored type."""
    t = f.type

    def integer(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise _key_error(spec, f, v)
        return str(operator.index(v))  # NumPy integers too

    def string(v: Any) -> str:
        if v is None:
            return "null"
        if not isinstance(v, str):
            raise _key_error(spec, f, v)
        return str(_string(v))

    def other(v: Any) -> str:  # dates, timestamps...: the write path's conversion, via Arrow
        try:
            (stored,) = to_json_values(pa.array([v], type=t))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise _key_error(spec, f, v) from exc
        return str(_compact(stored))

    if pa.types.is_integer(t):
        return integer
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return string
    return other


def _python_decoder(t: pa.DataType) -> Callable[[list[Any]], list[Any]]:
    """Stored JSON values as the Python values Arrow's ``to_pylist`` gives for type ``t``."""
    if needs_conversion(t):
        return lambda values: list(from_json_values(values, t).to_pylist())
    return lambda values: values


@dataclass(frozen=True)
class ReadPlan:
    """How to read ``features`` of ``spec`` for keys tables with ``key_schema``."""

    spec: TableSpec
    key_schema: pa.Schema
    names: list[str]
    encode: Encode
    decoders: tuple[Decode, ...]
    schema: pa.Schema  # of the result: the key columns as given, then the features

    @classmethod
    def build(
        cls,
        spec: TableSpec,
        key_schema: pa.Schema,
        keys: Sequence[str],
        features: Sequence[str] | None,
    ) -> ReadPlan:
        """Validate a read against ``spec`` (raising as ``keys_for_read`` does) and plan it."""
        check_key_columns(spec, key_schema, keys)
        names = check_features(spec, features)
        feature_fields = [spec.schema.field(n) for n in names]
        return cls(
            spec=spec,
            key_schema=key_schema,
            names=names,
            encode=_encoder(spec, key_schema),
            decoders=tuple(_decoder(f.type) for f in feature_fields),
            schema=pa.schema([*(key_schema.field(k) for k in spec.keys), *feature_fields]),
        )

    def result(self, keys_table: pa.Table, columns: list[list[Any]]) -> pa.Table:
        """The result table: the key columns of ``keys_table``, then one column per feature."""
        arrays: list[pa.Array | pa.ChunkedArray] = [
            keys_table.column(name) for name in self.spec.keys
        ]
        arrays += [decode(values) for decode, values in zip(self.decoders, columns, strict=True)]
        return pa.Table.from_arrays(arrays, schema=self.schema)


@dataclass(frozen=True)
class RowsPlan:
    """How to read ``features`` of ``spec`` for keys given as Python rows (mappings)."""

    spec: TableSpec
    names: list[str]
    fragments: tuple[Callable[[Any], str], ...]  # per key column, in the spec's order
    decoders: tuple[Callable[[list[Any]], list[Any]], ...]

    @classmethod
    def build(cls, spec: TableSpec, features: Sequence[str] | None) -> RowsPlan:
        names = check_features(spec, features)
        return cls(
            spec=spec,
            names=names,
            fragments=tuple(_python_fragment(spec, spec.schema.field(k)) for k in spec.keys),
            decoders=tuple(_python_decoder(spec.schema.field(n).type) for n in names),
        )

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Each row's key, as ``encode_key`` writes it; a missing key column raises."""
        keys = self.spec.keys
        try:
            if len(keys) == 1:
                (name,), (one,) = keys, self.fragments
                return ["[" + one(row[name]) + "]" for row in rows]
            return [
                "["
                + ",".join([fr(row[k]) for k, fr in zip(keys, self.fragments, strict=True)])
                + "]"
                for row in rows
            ]
        except KeyError as exc:
            raise SchemaMismatchError(
                f"a key row for online table {self.spec.name!r} has no key {exc.args[0]!r}",
                hint=f"the table is keyed by {list(keys)}",
            ) from None

    def result(
        self, rows: Sequence[Mapping[str, Any]], columns: list[list[Any]]
    ) -> list[dict[str, Any]]:
        """One dict per row: its key values, then the features."""
        values = [decode(c) for decode, c in zip(self.decoders, columns, strict=True)]
        out = []
        for i, row in enumerate(rows):
            found = {k: row[k] for k in self.spec.keys}
            for name, column in zip(self.names, values, strict=True):
                found[name] = column[i]
            out.append(found)
        return out


class ReadPlans:
    """The plans a store has made, by table, key names and features (a few per store)."""

    LIMIT = 256

    def __init__(self) -> None:
        self._tables: dict[tuple[str, tuple[str, ...], tuple[str, ...] | None], ReadPlan] = {}
        self._rows: dict[tuple[str, tuple[str, ...] | None], RowsPlan] = {}

    def for_table(
        self,
        spec: TableSpec,
        key_schema: pa.Schema,
        keys: Sequence[str],
        features: Sequence[str] | None,
    ) -> ReadPlan:
        """The plan for a read of a keys table, made on first use or when the spec changed."""
        key = (spec.name, tuple(keys), None if features is None else tuple(features))
        plan = self._tables.get(key)
        if plan is None or plan.spec is not spec or not plan.key_schema.equals(key_schema):
            plan = ReadPlan.build(spec, key_schema, keys, features)
            if len(self._tables) >= self.LIMIT:
                self._tables.clear()
            self._tables[key] = plan
        return plan

    def for_rows(self, spec: TableSpec, features: Sequence[str] | None) -> RowsPlan:
        """The plan for a read of Python key rows, made on first use or when the spec changed."""
        key = (spec.name, None if features is None else tuple(features))
        plan = self._rows.get(key)
        if plan is None or plan.spec is not spec:
            plan = RowsPlan.build(spec, features)
            if len(self._rows) >= self.LIMIT:
                self._rows.clear()
            self._rows[key] = plan
        return plan
