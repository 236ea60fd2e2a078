"""Arrow at the edges: turn user data into Arrow and conform it to a table's schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import SchemaMismatchError

ArrowData: TypeAlias = pa.Table | pa.RecordBatchReader

PK_KEY = b"lakeforge.primary_key"
COMMENT_KEY = b"comment"


def to_arrow(data: Any, *, what: str = "data") -> ArrowData:
    """Accept a pyarrow Table/RecordBatch/Reader, pandas or Polars frame, or any Arrow stream."""
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("pandas"):
        return _from_pandas(data)
    if module.startswith("polars"):
        return data.to_arrow()
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    if isinstance(data, dict):
        return pa.table(data)
    raise TypeError(
        f"{what}: expected an Arrow table or stream, a pandas or Polars DataFrame, or a dict "
        f"of columns; got {type(data).__name__}"
    )


def _from_pandas(frame: Any) -> pa.Table:
    """A pandas frame as Arrow; time-zone-aware columns keep their zone.

    pyarrow reads such columns through ``Series.values``, which pandas 3 deprecates
    (``Pandas4Warning``), so they go over as naive UTC and get their zone back in Arrow.
    """
    import pandas as pd

    zoned = {
        index: pa.timestamp(dtype.unit, dtype.tz)
        for index, dtype in enumerate(frame.dtypes)
        if isinstance(dtype, pd.DatetimeTZDtype)
    }
    if zoned:
        frame = frame.copy(deep=False)
        for index in zoned:
            frame.isetitem(index, frame.iloc[:, index].dt.tz_convert(None))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for index, zone in zoned.items():
        field = table.schema.field(index).with_type(zone)
        table = table.set_column(index, field, table.column(index).cast(zone))
    return table


def materialize(data: ArrowData) -> pa.Table:
    return data.read_all() if isinstance(data, pa.RecordBatchReader) else data


def type_kind(t: pa.DataType) -> str:
    """The family of an Arrow type (string encodings, integer widths... are one kind)."""
    if pa.types.is_dictionary(t):
        return type_kind(t.value_type)
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_timestamp(t):
        return "timestamp_tz" if t.tz else "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return "list"
    return str(t)


def can_cast(source: pa.DataType, target: pa.DataType) -> bool:
    """Whether data of ``source`` type may be written to a column of ``target`` type.

    Allowed: identical types, any value of type null, string/binary encodings, integer
    widening (and integers into floats), float widening, timestamp units with the same
    time-zone kind, and decimals into decimals. Anything else is a mismatch.
    """
    if source == target or pa.types.is_null(source):
        return True
    src, dst = type_kind(source), type_kind(target)
    if src == "int" and dst == "int":
        return source.bit_width <= target.bit_width and (
            pa.types.is_signed_integer(target) or pa.types.is_unsigned_integer(source)
        )
    if src == "int" and dst == "float":
        return True
    if src == "float" and dst == "float":
        return source.bit_width <= target.bit_width
    return src == dst and src in {
        "string",
        "binary",
        "timestamp",
        "timestamp_tz",
        "date",
        "decimal",
    }


def conform(data: pa.Table, target: pa.Schema, *, table: str, allow_new_columns: bool) -> pa.Table:
    """Cast ``data`` to the table's schema: reorder, widen types, fill missing columns with null.

    Columns not in the table are kept at the end only with ``allow_new_columns``.
    """
    names = set(data.column_names)
    extra = [name for name in data.column_names if target.get_field_index(name) < 0]
    problems: list[str] = []
    if extra and not allow_new_columns:
        problems.append(
            f"new column(s) {', '.join(extra)} not in the table "
            "(pass schema_evolution='merge' / --evolve-schema to add them)"
        )
    columns: list[pa.ChunkedArray] = []
    fields: list[pa.Field] = []
    for field in target:
        if field.name not in names:
            if not field.nullable:
                problems.append(f"column {field.name} ({field.type}) is missing and not nullable")
                continue
            columns.append(pa.nulls(data.num_rows, field.type))
            fields.append(field)
            continue
        column = data.column(field.name)
        if pa.types.is_dictionary(column.type) and can_cast(column.type.value_type, field.type):
            # Dictionary-encoded values are written as they are (delta-rs decodes them).
            columns.append(column)
            fields.append(field.with_type(column.type))
            continue
        if not can_cast(column.type, field.type):
            problems.append(f"column {field.name}: table has {field.type}, data has {column.type}")
            continue
        columns.append(column if column.type == field.type else pc.cast(column, field.type))
        fields.append(field)
    if problems:
        raise SchemaMismatchError(
            f"data does not match the schema of {table}:\n  " + "\n  ".join(problems)
        )
    for name in extra:
        columns.append(data.column(name))
        fields.append(data.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=target.metadata))


def conform_stream(
    reader: pa.RecordBatchReader, target: pa.Schema, *, table: str
) -> pa.RecordBatchReader:
    """:func:`conform` applied batch by batch, for data larger than memory."""
    first = conform(
        pa.Table.from_batches([], reader.schema), target, table=table, allow_new_columns=False
    )

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            yield from conform(
                pa.Table.from_batches([batch]), target, table=table, allow_new_columns=False
            ).to_batches()

    return pa.RecordBatchReader.from_batches(first.schema, batches())


def with_key_metadata(
    schema: pa.Schema,
    *,
    primary_keys: list[str] | None,
    comments: dict[str, str] | None,
    table: str,
) -> pa.Schema:
    """Record primary-key positions and column comments in the schema's field metadata."""
    primary_keys = primary_keys or []
    comments = comments or {}
    for name in [*primary_keys, *comments]:
        if schema.get_field_index(name) < 0:
            raise SchemaMismatchError(
                f"{table}: column {name!r} is not in the schema "
                f"(columns: {', '.join(schema.names)})"
            )
    fields = []
    for field in schema:
        meta = dict(field.metadata or {})
        if field.name in primary_keys:
            meta[PK_KEY] = str(primary_keys.index(field.name) + 1).encode()
            field = field.with_nullable(False)
        if field.name in comments:
            meta[COMMENT_KEY] = comments[field.name].encode()
        fields.append(field.with_metadata(meta or None))
    return pa.schema(fields)


def primary_keys_of(schema: pa.Schema) -> list[str]:
    """The primary-key columns recorded in the schema, in key order."""
    keyed = [
        (int(field.metadata[PK_KEY]), field.name)
        for field in schema
        if field.metadata and PK_KEY in field.metadata
    ]
    return [name for _, name in sorted(keyed)]


def comments_of(schema: pa.Schema) -> dict[str, str]:
    return {
        field.name: field.metadata[COMMENT_KEY].decode()
        for field in schema
        if field.metadata and COMMENT_KEY in field.metadata
    }


def parse_columns(ddl: str) -> pa.Schema:
    """Column definitions in SQL (``id BIGINT, name VARCHAR``) as an Arrow schema (via DuckDB)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE __lf_schema ({ddl})")
        schema = con.sql("SELECT * FROM __lf_schema").to_arrow_table().schema
    except duckdb.Error as exc:
        raise SchemaMismatchError(
            f"columns {ddl!r} are not valid SQL column definitions: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        con.close()
    # DuckDB names UTC "Etc/UTC"; Delta accepts only "UTC" for timestamps with a time zone.
    return pa.schema(
        [
            f.with_type(pa.timestamp(f.type.unit, tz="UTC"))
            if pa.types.is_timestamp(f.type) and f.type.tz is not None
            else f
            for f in schema
        ]
    )
