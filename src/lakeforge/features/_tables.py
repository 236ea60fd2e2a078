"""Feature tables: lakehouse Delta tables keyed on entity columns (and optionally a time).

A feature table is an ordinary lakehouse table whose primary key holds the entity keys
and, for time-series features, the timestamp key. Its key columns carry the field
metadata marker ``lakeforge.feature_table``; the timestamp key also carries
``lakeforge.timestamp_key``. Every other column is a feature.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lakeforge.errors import LakeforgeError, SchemaMismatchError
from lakeforge.lakehouse._arrow import comments_of, materialize, primary_keys_of, to_arrow
from lakeforge.lakehouse._names import TableName
from lakeforge.lakehouse._tables import Lakehouse, WriteResult

FEATURE_TABLE_KEY = b"lakeforge.feature_table"
TIMESTAMP_KEY = b"lakeforge.timestamp_key"


@dataclass
class FeatureTableInfo:
    """What :meth:`FeatureTables.describe` reports."""

    name: TableName
    version: int
    primary_keys: list[str]
    timestamp_key: str | None
    #: Feature columns (all non-key columns), in table order, with their descriptions.
    features: dict[str, str | None]
    description: str | None
    schema: pa.Schema

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


def timestamp_key_of(schema: pa.Schema) -> str | None:
    """The column marked as timestamp key, if any."""
    for field in schema:
        if field.metadata and TIMESTAMP_KEY in field.metadata:
            return str(field.name)
    return None


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
    return FeatureTableInfo(
        name=name,
        version=version,
        primary_keys=keys,
        timestamp_key=timestamp_key_of(schema),
        features={f.name: comments.get(f.name) for f in schema if f.name not in keys},
        description=description,
        schema=schema,
    )


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
        description: str | None = None,
        feature_descriptions: dict[str, str] | None = None,
    ) -> FeatureTableInfo:
        """Create a feature table from an Arrow schema, or from data (which is then written).

        The primary key is ``primary_keys`` plus ``timestamp_key`` (appended when not
        already listed); the timestamp key must be a timestamp column. Timestamp columns
        are stored in microseconds (UTC when they have a time zone), as Delta requires.
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
        fields = []
        for field in schema:
            meta = dict(field.metadata or {})
            if field.name in keys:
                meta[FEATURE_TABLE_KEY] = b"true"
            if field.name == timestamp_key:
                meta[TIMESTAMP_KEY] = b"true"
            if pa.types.is_timestamp(field.type):  # Delta stores microseconds (and only UTC)
                field = field.with_type(pa.timestamp("us", tz="UTC" if field.type.tz else None))
            fields.append(field.with_metadata(meta or None))
        self.lakehouse.create(
            table,
            pa.schema(fields),
            primary_keys=keys,
            comment=description,
            column_comments=feature_descriptions,
        )
        if data is not None and data.num_rows:
            self.write(table, data)
        return self.describe(table)

    def write(self, name: str | TableName, df: Any) -> WriteResult:
        """Upsert rows on the primary key (timestamp key included); new columns become features.

        Rows whose key already exists are updated, others inserted; a key repeated in
        ``df`` is refused.
        """
        info = self.describe(name)
        data = materialize(to_arrow(df, what=f"write to feature table {info.name}"))
        for key in info.primary_keys:
            if key not in data.column_names:
                raise SchemaMismatchError(
                    f"write to feature table {info.name}: primary key column {key!r} is missing "
                    f"from the data (columns: {', '.join(data.column_names)})"
                )
        return self.lakehouse.merge(info.name, data, keys=info.primary_keys, schema_evolution=True)

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
