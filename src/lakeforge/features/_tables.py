"""Feature tables: lakehouse Delta tables keyed on entity columns (and optionally a time).

A feature table is an ordinary lakehouse table whose primary key holds the entity keys
and, for time-series features, the timestamp key. Its key columns carry the field
metadata marker ``lakeforge.feature_table``; the timestamp key also carries
``lakeforge.timestamp_key``. An optional sequence column (``sequence_by``, marked
``lakeforge.sequence_by``) orders rows that share a primary key, the largest value being
the latest created, like Feast's ``created_timestamp_column`` or Delta Live Tables'
``SEQUENCE BY``. Every other column is a feature.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError, SchemaMismatchError
from lakeforge.lakehouse import (
    Lakehouse,
    TableName,
    WriteResult,
    check_unique,
    comments_of,
    conform,
    connect_duckdb,
    materialize,
    primary_keys_of,
    to_arrow,
    type_kind,
)

FEATURE_TABLE_KEY = b"lakeforge.feature_table"
TIMESTAMP_KEY = b"lakeforge.timestamp_key"
SEQUENCE_KEY = b"lakeforge.sequence_by"
#: Type kinds (see ``type_kind``) a sequence column may have: totally ordered values.
SEQUENCE_KINDS = ("int", "float", "decimal", "date", "timestamp", "timestamp_tz")


@dataclass
class FeatureTableInfo:
    """What :meth:`FeatureTables.describe` reports."""

    name: TableName
    version: int
    primary_keys: list[str]
    timestamp_key: str | None
    #: Feature columns (all but the keys and the sequence column), in table order, with
    #: their descriptions.
    features: dict[str, str | None]
    description: str | None
    schema: pa.Schema
    #: The column whose largest value marks the latest row among rows sharing a key.
    sequence_by: str | None = None

    @property
    def lookup_keys(self) -> list[str]:
        """The primary keys without the timestamp key: what a lookup joins on."""
        return [k for k in self.primary_keys if k != self.timestamp_key]


def lakehouse_of(obj: Any) -> Lakehouse:
    """A :class:`Lakehouse` from itself or a Workspace (``ws.tables``)."""
    if isinstance(obj, Lakehouse):
        return obj
    tables = getattr(obj, "tables", None)
    if isinstance(tables, Lakehouse):
        return tables
    raise TypeError(f"expected a Workspace or Lakehouse, got {type(obj).__name__}")


def _marked(schema: pa.Schema, marker: bytes) -> str | None:
    for field in schema:
        if field.metadata and marker in field.metadata:
            return str(field.name)
    return None


def timestamp_key_of(schema: pa.Schema) -> str | None:
    """The column marked as timestamp key, if any."""
    return _marked(schema, TIMESTAMP_KEY)


def sequence_by_of(schema: pa.Schema) -> str | None:
    """The column marked as sequence column, if any."""
    return _marked(schema, SEQUENCE_KEY)


def is_feature_schema(schema: pa.Schema) -> bool:
    return any(f.metadata and FEATURE_TABLE_KEY in f.metadata for f in schema)


def info_from_schema(
    name: TableName, schema: pa.Schema, *, version: int, description: str | None
) -> FeatureTableInfo:
    """Describe a feature table from its (Delta) schema; refuses non-feature tables."""
    if not is_feature_schema(schema):
        raise LakeforgeError(
            f"table {name} is not a feature table",
            hint="create it with FeatureTables.create(...)",
        )
    keys = primary_keys_of(schema)
    comments = comments_of(schema)
    sequence_by = sequence_by_of(schema)
    return FeatureTableInfo(
        name=name,
        version=version,
        primary_keys=keys,
        timestamp_key=timestamp_key_of(schema),
        features={
            f.name: comments.get(f.name)
            for f in schema
            if f.name not in keys and f.name != sequence_by
        },
        description=description,
        schema=schema,
        sequence_by=sequence_by,
    )


def sql_name(name: str) -> str:
    """``name`` as a quoted SQL identifier (DuckDB, Delta predicates)."""
    return '"' + name.replace('"', '""') + '"'


def _latest_per_key(data: pa.Table, keys: list[str], sequence_by: str, where: str) -> pa.Table:
    """Of rows sharing ``keys``, the one with the largest ``sequence_by`` (input order kept).

    A tie for the largest value is refused: nothing would say which row is the latest.
    """
    view = pa.table(
        {
            **{f"k{i}": data.column(k) for i, k in enumerate(keys)},
            "s": data.column(sequence_by),
            "i": pa.array(np.arange(data.num_rows, dtype=np.int64)),
        }
    )
    group = ", ".join(f"k{i}" for i in range(len(keys)))
    con = connect_duckdb()
    try:
        con.register("__lf_rows", view)
        latest = con.sql(
            f"SELECT i, count(*) OVER (PARTITION BY {group}, s) AS n FROM __lf_rows "
            f"QUALIFY row_number() OVER (PARTITION BY {group} ORDER BY s DESC) = 1 ORDER BY i"
        ).to_arrow_table()
    except duckdb.Error as exc:
        raise LakeforgeError(f"{where}: ordering rows by {sequence_by!r} failed: {exc}") from None
    finally:
        con.close()
    tied = latest.filter(pc.greater(latest.column("n"), 1))
    if tied.num_rows:
        sample = data.take(tied.column("i").slice(0, 3)).select([*keys, sequence_by]).to_pylist()
        raise SchemaMismatchError(
            f"{where}: {tied.num_rows} key(s) have several rows with the same sequence value "
            f"{sequence_by!r} and none larger, e.g. {sample}; the sequence column must tell "
            "which row is the latest (give each row of a key a distinct value)"
        )
    return data.take(latest.column("i"))


class FeatureTables:
    """Create, write (upsert), describe and list feature tables of a lakehouse."""

    def __init__(self, lakehouse: Lakehouse | Any) -> None:
        self.lakehouse = lakehouse_of(lakehouse)

    def create(
        self,
        name: str | TableName,
        schema_or_df: Any,
        *,
        primary_keys: str | Sequence[str],
        timestamp_key: str | None = None,
        sequence_by: str | None = None,
        description: str | None = None,
        feature_descriptions: dict[str, str] | None = None,
    ) -> FeatureTableInfo:
        """Create a feature table from an Arrow schema, or from data (which is then written).

        The primary key is ``primary_keys`` plus ``timestamp_key`` (appended when not
        already listed); the timestamp key must be a timestamp column. ``sequence_by``
        names a column (integer, float, decimal, date or timestamp; not a key) whose
        largest value marks the latest row among rows sharing a primary key: writes,
        training sets and publishing keep that row. Timestamp columns are stored in
        microseconds (UTC when they have a time zone), as Delta requires. Data is
        checked before anything is created: a refused create leaves no table.
        """
        table = self.lakehouse.name(name)
        data: pa.Table | None = None
        if isinstance(schema_or_df, pa.Schema):
            schema = schema_or_df
        else:
            data = materialize(to_arrow(schema_or_df, what=f"feature table {table}"))
            schema = data.schema.remove_metadata()
        keys = [primary_keys] if isinstance(primary_keys, str) else list(primary_keys)
        if not keys:
            raise SchemaMismatchError(f"feature table {table}: at least one primary key is needed")
        if timestamp_key is not None and timestamp_key not in keys:
            keys.append(timestamp_key)
        for column in [*keys, *(feature_descriptions or {})]:
            if schema.get_field_index(column) < 0:
                raise SchemaMismatchError(
                    f"feature table {table}: column {column!r} is not in the schema "
                    f"(columns: {', '.join(schema.names)})"
                )
        if timestamp_key is not None:
            ts_type = schema.field(timestamp_key).type
            if not pa.types.is_timestamp(ts_type):
                raise SchemaMismatchError(
                    f"feature table {table}: timestamp key {timestamp_key!r} has type {ts_type}, "
                    "not a timestamp"
                )
        if sequence_by is not None:
            _check_sequence_column(table, schema, keys, sequence_by)
        fields = []
        for field in schema:
            meta = dict(field.metadata or {})
            if field.name in keys:
                meta[FEATURE_TABLE_KEY] = b"true"
            if field.name == timestamp_key:
                meta[TIMESTAMP_KEY] = b"true"
            if field.name == sequence_by:
                meta[SEQUENCE_KEY] = b"true"
            if pa.types.is_timestamp(field.type):  # Delta stores microseconds (and only UTC)
                field = field.with_type(pa.timestamp("us", tz="UTC" if field.type.tz else None))
            fields.append(field.with_metadata(meta or None))
        table_schema = pa.schema(fields)
        rows = None
        if data is not None and data.num_rows:
            rows = _prepare(table, data, table_schema, keys, sequence_by, evolve=False)
        self.lakehouse.create(
            table,
            table_schema,
            primary_keys=keys,
            comment=description,
            column_comments=feature_descriptions,
        )
        if rows is not None:
            self._merge(table, rows, keys, sequence_by)
        return self.describe(table)

    def write(self, name: str | TableName, df: Any) -> WriteResult:
        """Upsert rows on the primary key (timestamp key included); new columns become features.

        Rows whose key already exists are updated, others inserted. Without a sequence
        column a key repeated in ``df`` is refused; with one, of the rows sharing a key
        (in ``df`` or in the table) the one with the largest sequence value is kept.
        """
        info = self.describe(name)
        data = materialize(to_arrow(df, what=f"write to feature table {info.name}"))
        rows = _prepare(
            info.name, data, info.schema, info.primary_keys, info.sequence_by, evolve=True
        )
        return self._merge(info.name, rows, info.primary_keys, info.sequence_by)

    def _merge(
        self, table: TableName, rows: pa.Table, keys: list[str], sequence_by: str | None
    ) -> WriteResult:
        """Upsert prepared rows; with a sequence column an older row never replaces a newer one."""
        update_if = None
        if sequence_by is not None:
            seq = sql_name(sequence_by)
            update_if = f"t.{seq} IS NULL OR s.{seq} > t.{seq}"
        return self.lakehouse.merge(
            table, rows, keys=keys, schema_evolution=True, update_if=update_if
        )

    def describe(self, name: str | TableName) -> FeatureTableInfo:
        """Primary keys, timestamp key and features (with descriptions) of a feature table."""
        table = self.lakehouse.name(name)
        dt = self.lakehouse.delta(table)
        schema = pa.schema(dt.schema().to_arrow())
        return info_from_schema(
            table, schema, version=dt.version(), description=dt.metadata().description
        )

    def list(self, *, schema: str | None = None) -> builtins.list[TableName]:
        """Feature tables in this target's catalog (optionally one schema)."""
        return [
            t
            for t in self.lakehouse.list(schema=schema)
            if is_feature_schema(self.lakehouse.schema(t))
        ]


def _check_sequence_column(
    table: TableName, schema: pa.Schema, keys: list[str], sequence_by: str
) -> None:
    where = f"feature table {table}"
    if schema.get_field_index(sequence_by) < 0:
        raise SchemaMismatchError(
            f"{where}: sequence column {sequence_by!r} is not in the schema "
            f"(columns: {', '.join(schema.names)})"
        )
    if sequence_by in keys:
        raise SchemaMismatchError(
            f"{where}: sequence column {sequence_by!r} is a key column (keys: {', '.join(keys)}); "
            "it must be another column, ordering rows that share a key"
        )
    kind = type_kind(schema.field(sequence_by).type)
    if kind not in SEQUENCE_KINDS:
        raise SchemaMismatchError(
            f"{where}: sequence column {sequence_by!r} has type {schema.field(sequence_by).type}, "
            "which cannot order rows; allowed: integer, floating point, decimal, date or "
            "timestamp"
        )


def _prepare(
    table: TableName,
    data: pa.Table,
    schema: pa.Schema,
    keys: list[str],
    sequence_by: str | None,
    *,
    evolve: bool,
) -> pa.Table:
    """Check rows for a feature-table merge: types, non-null keys, one row per key.

    Rows sharing a key are refused, or resolved by the sequence column when there is one.
    """
    where = f"write to feature table {table}"
    for key in keys:
        if key not in data.column_names:
            raise SchemaMismatchError(
                f"{where}: primary key column {key!r} is missing from the data "
                f"(columns: {', '.join(data.column_names)})"
            )
    if sequence_by is not None and sequence_by not in data.column_names:
        raise SchemaMismatchError(
            f"{where}: sequence column {sequence_by!r} is missing from the data "
            f"(columns: {', '.join(data.column_names)}); every row needs a sequence value"
        )
    rows = conform(data, schema, table=str(table), allow_new_columns=evolve)
    for key in keys:
        if nulls := rows.column(key).null_count:
            raise SchemaMismatchError(
                f"{where}: key column {key!r} has {nulls} null value(s); key columns may not "
                "be null"
            )
    if sequence_by is None:
        check_unique(rows, keys, table)
        return rows
    column = rows.column(sequence_by)
    missing = column.null_count
    if pa.types.is_floating(column.type):
        missing += pc.sum(pc.is_nan(column)).as_py() or 0
    if missing:
        raise SchemaMismatchError(
            f"{where}: sequence column {sequence_by!r} has {missing} null (or NaN) value(s); "
            "every row needs a value to be ordered"
        )
    return _latest_per_key(rows, keys, sequence_by, where)
