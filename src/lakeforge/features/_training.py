"""Training sets: label rows joined point-in-time to feature tables with DuckDB.

For a lookup with ``timestamp_lookup_key`` each label row gets the feature row of the
same key with the latest timestamp *at or before* the row's timestamp (an ``ASOF LEFT
JOIN``), never a later one; with ``lookback_window`` that row must also be no older than
the row's timestamp minus the window (the edge itself included), else the features are
null. A lookup without ``timestamp_lookup_key`` takes the latest row per key. Label
rows are never dropped or duplicated. The newest matching row wins even where its
feature value is null (an older non-null value is not used); ``default_values`` replace
any null result.

Equal timestamps: when a feature table holds several rows with the same key and
timestamp (possible only through plain lakehouse appends; feature-table writes are
upserts), one row is kept before joining: the row with the largest value of the table's
sequence column (``sequence_by``, nulls lowest) when it has one, and among those (or
without one) the row whose feature values, compared column by column in table order
with nulls lowest, are the largest. This depends only on the data, never on file layout
or scan order, so repeated builds give identical results.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError, SchemaMismatchError
from lakeforge.features._lookups import FeatureFunction, FeatureLookup, get_function
from lakeforge.features._tables import FeatureTableInfo, FeatureTables
from lakeforge.lakehouse import (
    Lakehouse,
    WriteMode,
    WriteResult,
    connect_duckdb,
    register_snapshot,
    to_arrow,
    type_kind,
)

_ROW = "__lf_row"
_LABELS = "__lf_labels"
_BATCH_ROWS = 122_880
Progress = Callable[[int, int | None], None]
"""Called with (label rows joined so far, label rows in all or None for a stream)."""


@dataclass(frozen=True)
class _Plan:
    """One validated lookup: which table snapshot, which features, under which names."""

    lookup: FeatureLookup
    info: FeatureTableInfo
    features: list[str]

    @property
    def outputs(self) -> list[str]:
        return [self.lookup.output_name(f) for f in self.features]


_KEY_PRESERVING = frozenset(
    {"CREATE TABLE", "MERGE", "DELETE", "OPTIMIZE", "VACUUM START", "VACUUM END"}
)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class TrainingSet:
    """Label data joined to features; build it with :func:`create_training_set`.

    Each :meth:`load_df` / :meth:`to_reader` / :meth:`write_to` runs the join afresh over
    the feature table versions pinned when the set was created. Label data given as a
    stream (a ``RecordBatchReader``) can be consumed only once.
    """

    def __init__(
        self,
        lakehouse: Lakehouse,
        labels: pa.Table | pa.RecordBatchReader,
        plans: list[_Plan],
        functions: list[FeatureFunction],
        label: list[str],
        exclude_columns: list[str],
    ) -> None:
        self._lakehouse = lakehouse
        self._labels = labels
        self._plans = plans
        self._functions = functions
        self._consumed = False
        self.label = label
        self.exclude_columns = exclude_columns
        names = [n for n in labels.schema.names]
        names += [o for p in plans for o in p.outputs] + [f.output_name for f in functions]
        #: The columns of the result, in order.
        self.columns: list[str] = [n for n in names if n not in exclude_columns]
        self._unique = [self._unique_rows(plan) for plan in plans]
        self._sql = self._build_sql()

    def input_head(self, n: int) -> pa.Table | None:
        """The first ``n`` rows of the labelled input, when it is held in memory."""
        return self._labels.slice(0, n) if isinstance(self._labels, pa.Table) else None

    def _unique_rows(self, plan: _Plan) -> bool:
        """Whether a point-in-time lookup's table has one row per (key, timestamp).

        Then the equal-timestamp rule has nothing to resolve and the join skips the
        deduplicating window over the whole table (a hash aggregate is much cheaper).
        """
        ts = plan.info.timestamp_key
        if plan.lookup.timestamp_lookup_key is None or ts is None:
            return False
        if self._written_by_merges(plan):
            return True
        con = connect_duckdb()
        try:
            register_snapshot(
                con, "__lf_check", self._lakehouse, plan.info.name, version=plan.info.version
            )
            group = ", ".join(_q(c) for c in [*plan.info.lookup_keys, ts])
            found = con.sql(
                f"SELECT EXISTS (SELECT 1 FROM __lf_check GROUP BY {group} HAVING count(*) > 1)"
            ).fetchall()
        finally:
            con.close()
        return not found[0][0]

    def _written_by_merges(self, plan: _Plan) -> bool:
        """Whether every commit up to the read version keeps the primary key unique.

        Feature tables are written by merges on their primary key (timestamp key
        included), which refuse repeated keys: such a table needs no check. A plain
        append or overwrite (through the lakehouse API) may repeat keys.
        """
        commits = self._lakehouse.delta(plan.info.name).history()
        return all(
            commit.get("operation") in _KEY_PRESERVING
            for commit in commits
            if commit.get("version", 0) <= plan.info.version
        )

    # -- the query --------------------------------------------------------------------

    def _build_sql(self) -> str:
        ctes = []
        joins = []
        selects = [f"{_LABELS}.*"]
        for i, plan in enumerate(self._plans):
            info, lookup = plan.info, plan.lookup
            alias = f"__lf_f{i}"
            keys = info.lookup_keys
            ts = info.timestamp_key
            sequence = [info.sequence_by] if info.sequence_by is not None else []
            tiebreak = [f"{_q(c)} DESC NULLS LAST" for c in [*sequence, *info.features]]
            cols = [f"{_q(k)} AS __k{j}" for j, k in enumerate(keys)]
            cols += [f"{_q(f)} AS __v{j}" for j, f in enumerate(plan.features)]
            if ts is not None:
                cols.append(f"{_q(ts)} AS __ts")
            partition = ", ".join(_q(k) for k in keys)
            if lookup.timestamp_lookup_key is not None:
                partition += f", {_q(str(ts))}"
                order = tiebreak
            else:
                order = ([f"{_q(ts)} DESC"] if ts is not None else []) + tiebreak
            order_sql = ", ".join(order) or "1"
            dedupe = (
                ""
                if self._unique[i]
                else f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY {order_sql}) = 1"
            )
            ctes.append(f"{alias} AS (SELECT {', '.join(cols)} FROM __lf_table{i} {dedupe})")
            on = [f"{_LABELS}.{_q(k)} = {alias}.__k{j}" for j, k in enumerate(lookup.lookup_keys)]
            if lookup.timestamp_lookup_key is not None:
                label_ts = f"{_LABELS}.{_q(lookup.timestamp_lookup_key)}"
                on.append(f"{label_ts} >= {alias}.__ts")
                joins.append(f"ASOF LEFT JOIN {alias} ON {' AND '.join(on)}")
            else:
                joins.append(f"LEFT JOIN {alias} ON {' AND '.join(on)}")
            for j, output in enumerate(plan.outputs):
                value = f"{alias}.__v{j}"
                if lookup.lookback_window is not None:
                    micros = lookup.lookback_window // timedelta(microseconds=1)
                    value = (
                        f"CASE WHEN {alias}.__ts >= {label_ts} - to_microseconds({micros}) "
                        f"THEN {value} END"
                    )
                selects.append(f"{value} AS {_q(output)}")
        with_sql = f"WITH {', '.join(ctes)} " if ctes else ""
        return f"{with_sql}SELECT {', '.join(selects)} FROM {_LABELS} {' '.join(joins)}"

    def _labels_with_rows(self) -> pa.Table | pa.RecordBatchReader:
        labels = self._labels
        if isinstance(labels, pa.Table):
            return labels.append_column(_ROW, pa.array(np.arange(labels.num_rows, dtype=np.int64)))
        if self._consumed:
            raise LakeforgeError(
                "this training set's label data was a stream and has been read already",
                hint="pass a table or DataFrame to read a training set more than once",
            )
        self._consumed = True
        schema = labels.schema.append(pa.field(_ROW, pa.int64()))

        def batches() -> Iterator[pa.RecordBatch]:
            offset = 0
            for batch in labels:
                rows = pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
                offset += batch.num_rows
                yield pa.RecordBatch.from_arrays([*batch.columns, rows], schema=schema)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def to_reader(
        self,
        *,
        ordered: bool = True,
        batch_size: int = _BATCH_ROWS,
        progress: Progress | None = None,
    ) -> pa.RecordBatchReader:
        """The training set as a stream of record batches (in label row order if ``ordered``).

        ``progress(rows_done, rows_total)`` is called after each batch; the total is None
        when the label data is a stream.
        """
        con = connect_duckdb()
        con.execute("SET TimeZone = 'UTC'")
        con.register(_LABELS, self._labels_with_rows())
        for i, plan in enumerate(self._plans):
            register_snapshot(
                con, f"__lf_table{i}", self._lakehouse, plan.info.name, version=plan.info.version
            )
        sql = f"SELECT * FROM ({self._sql}) ORDER BY {_ROW}" if ordered else self._sql
        try:
            reader = con.sql(sql).to_arrow_reader(batch_size)
        except duckdb.Error as exc:
            con.close()
            raise LakeforgeError(f"building the training set failed: {exc}") from None
        total = self._labels.num_rows if isinstance(self._labels, pa.Table) else None
        return self._finish(reader, con, progress, total)

    def _finish(
        self,
        reader: pa.RecordBatchReader,
        con: duckdb.DuckDBPyConnection,
        progress: Progress | None,
        total: int | None,
    ) -> pa.RecordBatchReader:
        """Apply defaults and feature functions, drop helper and excluded columns, batch-wise."""
        defaults = {
            plan.lookup.output_name(f): v
            for plan in self._plans
            for f, v in (plan.lookup.default_values or {}).items()
        }
        types: dict[str, pa.DataType | None] = {
            fn.output_name: get_function(fn.udf_name)[1] for fn in self._functions
        }

        def transform(batch: pa.RecordBatch) -> pa.RecordBatch:
            table = pa.Table.from_batches([batch])
            for column, value in defaults.items():
                i = table.schema.get_field_index(column)
                filled = pc.fill_null(table.column(i), pa.scalar(value, table.field(i).type))
                table = table.set_column(i, column, filled)
            if self._functions:
                frame = table.to_pandas()
                for fn in self._functions:
                    out = fn.compute(frame, types[fn.output_name])
                    types[fn.output_name] = out.type
                    frame[fn.output_name] = out.to_pandas()
                    table = table.append_column(fn.output_name, out)
            return table.select(self.columns).combine_chunks().to_batches()[0]

        def empty() -> pa.RecordBatch:
            return transform(pa.RecordBatch.from_pylist([], schema=reader.schema))

        batches = iter(reader)
        first = next(batches, None)
        head = transform(first) if first is not None else None
        if head is None:
            for name in types:
                types[name] = types[name] or pa.null()
            head = empty()
        schema = head.schema

        def stream() -> Iterator[pa.RecordBatch]:
            done = 0
            try:
                if first is not None:
                    done += head.num_rows
                    if progress is not None:
                        progress(done, total)
                    yield head
                for batch in batches:
                    done += batch.num_rows
                    if progress is not None:
                        progress(done, total)
                    yield transform(batch).cast(schema)
            finally:
                con.close()

        return pa.RecordBatchReader.from_batches(schema, stream())

    # -- results ----------------------------------------------------------------------

    def load_df(
        self,
        format: Literal["arrow", "pandas", "polars"] = "arrow",
        *,
        progress: Progress | None = None,
    ) -> pa.Table | pd.DataFrame | pl.DataFrame:
        """The whole training set in memory, in the label data's row order."""
        table = self.to_reader(ordered=True, progress=progress).read_all()
        if format == "pandas":
            return table.to_pandas()
        if format == "polars":
            return pl.from_arrow(table)
        return table

    def write_to(
        self, table_name: str, *, mode: WriteMode = "overwrite", progress: Progress | None = None
    ) -> WriteResult:
        """Stream the training set into a lakehouse table (it never sits whole in memory)."""
        reader = self.to_reader(ordered=False, progress=progress)
        return self._lakehouse.write(table_name, reader, mode=mode)

    @property
    def feature_spec(self) -> dict[str, Any]:
        """A JSON-serialisable description of the lookups, for packaging with a model."""
        return {
            "format_version": 1,
            "label": self.label,
            "exclude_columns": self.exclude_columns,
            "input_columns": [n for n in self._labels.schema.names],
            "output_columns": self.columns,
            "lookups": [
                {
                    "table_name": str(p.info.name),
                    "table_version": p.info.version,
                    "lookup_key": list(p.lookup.lookup_keys),
                    "table_primary_keys": p.info.lookup_keys,
                    "timestamp_lookup_key": p.lookup.timestamp_lookup_key,
                    "timestamp_key": p.info.timestamp_key,
                    "timestamp_tz": (
                        p.info.schema.field(p.info.timestamp_key).type.tz
                        if p.info.timestamp_key is not None
                        else None
                    ),
                    "lookback_window_seconds": (
                        p.lookup.lookback_window.total_seconds()
                        if p.lookup.lookback_window is not None
                        else None
                    ),
                    "features": [
                        {
                            "name": f,
                            "output_name": p.lookup.output_name(f),
                            "type": str(p.info.schema.field(f).type),
                            "default": _jsonable((p.lookup.default_values or {}).get(f)),
                        }
                        for f in p.features
                    ],
                }
                for p in self._plans
            ],
            "functions": [
                {
                    "udf_name": f.udf_name,
                    "input_bindings": dict(f.input_bindings),
                    "output_name": f.output_name,
                }
                for f in self._functions
            ],
        }


def _plan(
    tables: FeatureTables, lookup: FeatureLookup, schema: pa.Schema, taken: set[str]
) -> _Plan:
    info = tables.describe(lookup.table_name)
    where = f"lookup on {info.name}"
    keys = list(lookup.lookup_keys)
    if len(keys) != len(info.lookup_keys):
        raise SchemaMismatchError(
            f"{where}: lookup_key {keys} has {len(keys)} column(s) but the table's key "
            f"{info.lookup_keys} has {len(info.lookup_keys)}"
        )
    for column, table_key in zip(keys, info.lookup_keys, strict=True):
        if schema.get_field_index(column) < 0:
            raise SchemaMismatchError(
                f"{where}: lookup key column {column!r} is not in the training data "
                f"(columns: {', '.join(schema.names)})"
            )
        have, want = schema.field(column).type, info.schema.field(table_key).type
        if type_kind(have) != type_kind(want):
            raise SchemaMismatchError(
                f"{where}: lookup key column {column!r} has type {have} but the feature "
                f"table's key {table_key!r} has type {want}"
            )
    ts = lookup.timestamp_lookup_key
    if ts is not None:
        if info.timestamp_key is None:
            raise SchemaMismatchError(
                f"{where}: timestamp_lookup_key {ts!r} given but the feature table has no "
                "timestamp key"
            )
        if schema.get_field_index(ts) < 0:
            raise SchemaMismatchError(
                f"{where}: timestamp lookup column {ts!r} is not in the training data "
                f"(columns: {', '.join(schema.names)})"
            )
        have, want = schema.field(ts).type, info.schema.field(info.timestamp_key).type
        if type_kind(have) != type_kind(want):
            raise SchemaMismatchError(
                f"{where}: timestamp lookup column {ts!r} has type {have} but the timestamp "
                f"key {info.timestamp_key!r} has type {want}"
            )
    features = list(lookup.feature_names or info.features)
    for name in [*features, *(lookup.rename_outputs or {}), *(lookup.default_values or {})]:
        if name not in info.features:
            raise SchemaMismatchError(
                f"{where}: unknown feature {name!r} (features: {', '.join(info.features)})"
            )
    for name in [*(lookup.rename_outputs or {}), *(lookup.default_values or {})]:
        if name not in features:
            raise SchemaMismatchError(f"{where}: feature {name!r} is not among feature_names")
    for name, value in (lookup.default_values or {}).items():
        try:
            pa.scalar(value, info.schema.field(name).type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise SchemaMismatchError(
                f"{where}: default value {value!r} for feature {name!r} does not fit its type "
                f"{info.schema.field(name).type}: {exc}"
            ) from None
    for name in features:
        output = lookup.output_name(name)
        if output in taken:
            raise SchemaMismatchError(
                f"{where}: output column {output!r} (feature {name!r}) already exists in the "
                "training set; use rename_outputs"
            )
        taken.add(output)
    return _Plan(lookup, info, features)


def create_training_set(
    lakehouse: Lakehouse,
    df: Any,
    feature_lookups: Sequence[FeatureLookup | FeatureFunction],
    label: str | Sequence[str] | None,
    exclude_columns: Sequence[str] | None = None,
) -> TrainingSet:
    """Join ``df`` (pandas, Arrow, Polars or an Arrow stream) to features, point-in-time.

    Inputs are validated up front; errors name the offending column. Feature table
    versions are pinned now, so every read of the result sees the same features.
    ``lakehouse`` holds the feature tables (``ws.tables``; ``ws.create_training_set``
    passes it).
    """
    if not isinstance(lakehouse, Lakehouse):
        raise TypeError(
            f"create_training_set: expected a Lakehouse (ws.tables), got {type(lakehouse).__name__}"
        )
    labels = to_arrow(df, what="training set data")
    schema = labels.schema
    if _ROW in schema.names:
        raise SchemaMismatchError(f"training data may not have a column named {_ROW!r}")
    labels_list = [] if label is None else [label] if isinstance(label, str) else list(label)
    for column in labels_list:
        if schema.get_field_index(column) < 0:
            raise SchemaMismatchError(
                f"label column {column!r} is not in the training data "
                f"(columns: {', '.join(schema.names)})"
            )
    tables = FeatureTables(lakehouse)
    taken = set(schema.names)
    plans: list[_Plan] = []
    functions: list[FeatureFunction] = []
    for item in feature_lookups:
        if isinstance(item, FeatureLookup):
            plans.append(_plan(tables, item, schema, taken))
        elif isinstance(item, FeatureFunction):
            functions.append(item)
        else:
            raise TypeError(f"expected FeatureLookup or FeatureFunction, got {type(item).__name__}")
    for fn in functions:
        get_function(fn.udf_name)
        for param, column in fn.input_bindings.items():
            if column not in taken:
                raise SchemaMismatchError(
                    f"feature function {fn.udf_name!r}: input {param!r} is bound to column "
                    f"{column!r}, which the training set does not have"
                )
        if fn.output_name in taken:
            raise SchemaMismatchError(
                f"feature function {fn.udf_name!r}: output column {fn.output_name!r} "
                "already exists in the training set"
            )
        taken.add(fn.output_name)
    excluded = list(exclude_columns or [])
    for column in excluded:
        if column not in taken:
            raise SchemaMismatchError(
                f"exclude_columns: column {column!r} is not in the training set"
            )
        if column in labels_list:
            raise SchemaMismatchError(f"exclude_columns: {column!r} is the label")
    return TrainingSet(lakehouse, labels, plans, functions, labels_list, excluded)
