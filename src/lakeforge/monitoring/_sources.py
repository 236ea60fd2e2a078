"""What a refresh reads: the rows of some windows of the monitored table (a serving
inference table is unpacked into one row per scored record), the changes since the
version last processed (the change data feed), and late-arriving labels.

Serving logs hold MLflow scoring requests as JSON (``dataframe_split``,
``dataframe_records``, ``inputs``, ``instances``) and responses as
``{"predictions": [...]}``; a record becomes one row of its feature columns, its
prediction column(s), ``request_id``, ``timestamp`` and ``model_version``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from lakeforge.errors import SchemaMismatchError
from lakeforge.lakehouse import TableName, connect_duckdb, type_kind
from lakeforge.monitoring._windows import (
    SNAPSHOT_WINDOW,
    TIMESTAMP,
    Window,
    as_timestamps,
    merged,
    start_counts,
)
from lakeforge.project import MonitorSpec

if TYPE_CHECKING:
    import duckdb

    from lakeforge._workspace import Workspace

#: Columns that make a table a serving inference table (``lakeforge.serving``'s schema).
SERVING_COLUMNS = ("request_id", "timestamp_ms", "status_code", "execution_time_ms", "request")
#: Columns an unpacked serving log adds besides features and predictions.
RECORD_COLUMNS = ("request_id", "record_index", "timestamp", "model_version")
REQUEST_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def is_serving_log(schema: pa.Schema) -> bool:
    return all(schema.get_field_index(c) >= 0 for c in (*SERVING_COLUMNS, "response"))


class Source:
    """The monitored table of one monitor (or its baseline table), as the refresh sees it.

    Reads go through one Arrow dataset of the snapshot: only the columns asked for, and
    only the files and row groups a window's time range can hold (delta-rs gives each
    file's statistics to the dataset). It keeps the table's types: ``Lakehouse.scan``'s
    string views have no filter kernel in pyarrow.
    """

    def __init__(self, ws: Workspace, spec: MonitorSpec, table: str | None = None) -> None:
        self.ws = ws
        self.spec = spec
        self.table = TableName.parse(table or spec.table, default_catalog=ws.target.catalog)
        self.version = ws.tables.delta(self.table).version()
        self.raw_schema = ws.tables.schema(self.table)
        self.serving = is_serving_log(self.raw_schema)
        self.rows_read = 0
        self._dataset: pads.Dataset | None = None

    @property
    def time_column(self) -> str | None:
        """The raw column windows are cut on (``timestamp_ms`` in a serving log)."""
        if self.spec.profile == "snapshot":
            return None
        return "timestamp_ms" if self.serving else self.spec.timestamp_col

    def timestamps(self, rows: pa.Table) -> pa.ChunkedArray:
        """The window times of raw rows (or unpacked records)."""
        if self.serving and "timestamp_ms" in rows.column_names:
            return pc.cast(pc.cast(rows.column("timestamp_ms"), pa.timestamp("ms")), TIMESTAMP)
        column = self.spec.timestamp_col
        if column is None or column not in rows.column_names:
            raise SchemaMismatchError(
                f"monitor {self.spec.name}: {self.table} has no timestamp column {column!r} "
                f"(columns: {', '.join(rows.column_names)})"
            )
        return as_timestamps(rows.column(column), column=column)

    def changes(self, since: int) -> pa.Table | None:
        """The window times of rows inserted, updated or deleted after version ``since``, as
        the change data feed's time column (None: the feed cannot cover that range, e.g. it
        is off or was vacuumed)."""
        column = self.time_column or self.raw_schema.names[0]
        try:
            feed = self.ws.tables.delta(self.table).load_cdf(
                starting_version=since + 1, ending_version=self.version, columns=[column]
            )
            changed = pa.RecordBatchReader.from_stream(feed).read_all()
        except Exception:  # noqa: BLE001 - delta-rs raises several types; a full read follows
            return None
        self.rows_read += changed.num_rows
        return changed

    def read(self, windows: Sequence[Window] | None) -> pa.Table:
        """Every raw column of the snapshot's rows in these windows (None: every row)."""
        rows = self.rows(windows, None)
        self.rows_read += rows.num_rows
        return rows

    def rows(self, windows: Sequence[Window] | None, columns: list[str] | None) -> pa.Table:
        """``columns`` (None: all) of the rows in these windows (None: every row), in the
        table's types; not counted in ``rows_read`` (a window is read column group by group)."""
        column = self.time_column
        where = None if windows is None or column is None else self._within(column, windows)
        return self._scan().to_table(columns=columns, filter=where)

    def window_counts(
        self, granularities: list[str], ranges: Sequence[Window] | None
    ) -> dict[str, dict[datetime, int]]:
        """The rows of each window of each granularity, among the rows in ``ranges`` (None:
        every row), from the time column alone; those rows count as read."""
        found: dict[str, dict[datetime, int]] = {g: {} for g in granularities}
        column = self.time_column
        if ranges is not None and not ranges:
            return found
        if column is None:  # a snapshot: one window of every row
            count = self._scan().count_rows()
            self.rows_read += count
            return {g: {SNAPSHOT_WINDOW[0]: count} for g in granularities}
        where = None if ranges is None else self._within(column, ranges)
        for batch in self._scan().to_batches(columns=[column], filter=where):
            self.rows_read += batch.num_rows
            times = self.timestamps(pa.Table.from_batches([batch]))
            for granularity in granularities:
                counts = found[granularity]
                for start, count in start_counts(times, granularity).items():
                    counts[start] = counts.get(start, 0) + count
        return found

    def split(self, rows: pa.Table, windows: Sequence[Window]) -> list[pa.Table]:
        """Rows (with the time column) cut into these disjoint windows, oldest first, each
        keeping its rows' order: one stable sort by window, not one filter per window."""
        times = pc.fill_null(self.timestamps(rows).cast(pa.int64()), _BEFORE_ALL)
        micros = np.asarray(times.to_numpy())
        starts = np.array([_micros(start) for start, _end in windows], np.int64)
        ends = np.array([_micros(end) for _start, end in windows], np.int64)
        at = np.searchsorted(starts, micros, side="right") - 1
        outside = (at < 0) | (micros >= ends[np.maximum(at, 0)])
        at[outside] = len(windows)  # sorted last, then left out
        order = np.argsort(at, kind="stable")
        cuts = np.searchsorted(at[order], np.arange(len(windows) + 1))
        kept = rows.take(order[: cuts[-1]])
        return [kept.slice(low, high - low) for low, high in itertools.pairwise(cuts)]

    def _scan(self) -> pads.Dataset:
        if self._dataset is None:
            delta = self.ws.tables.delta(self.table, version=self.version)
            self._dataset = delta.to_pyarrow_dataset()
        return self._dataset

    def _within(self, column: str, windows: Sequence[Window]) -> pc.Expression:
        """Rows whose ``column`` falls in any of these windows, as a dataset filter."""
        kind = self.raw_schema.field(column).type
        found = pc.scalar(False)
        for start, end in merged(list(windows)):
            low, high = (_bound(t, kind, serving=self.serving) for t in (start, end))
            found = found | ((pc.field(column) >= low) & (pc.field(column) < high))
        return found

    def records(self, raw: pa.Table) -> pa.Table:
        """The rows profiled: raw rows, or a serving log's unpacked records."""
        return unpack(raw, self.spec) if self.serving else raw


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BEFORE_ALL = -(2**63)  # a null time: in no window


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _bound(moment: datetime, kind: pa.DataType, *, serving: bool) -> pa.Scalar:
    """A window bound as a value of the time column's type: epoch milliseconds in a
    serving log, the first date on or after it for a date column, else a timestamp."""
    if serving:
        return pa.scalar(int(moment.timestamp() * 1000), kind)
    if pa.types.is_date(kind):
        day = moment.astimezone(UTC)
        after = day.date() + timedelta(days=1) if day.time() != time() else day.date()
        return pa.scalar(after, kind)
    if pa.types.is_timestamp(kind) and kind.tz is None:
        return pa.scalar(moment.astimezone(UTC).replace(tzinfo=None), kind)
    return pa.scalar(moment, kind)


# -- serving logs -----------------------------------------------------------------------


def _request_columns(request: Any) -> dict[str, list[Any]]:
    """An MLflow scoring request as columns (name -> values)."""
    if not isinstance(request, dict):
        return {}
    fmt = next((f for f in REQUEST_FORMATS if f in request), None)
    data = request.get(fmt) if fmt else None
    if fmt == "dataframe_split" and isinstance(data, dict):
        names = [str(n) for n in data.get("columns", [])]
        return {n: [row[i] for row in data.get("data", [])] for i, n in enumerate(names)}
    if isinstance(data, dict):  # columnar inputs/instances: name -> values
        return {str(k): v if isinstance(v, list) else [v] for k, v in data.items()}
    if isinstance(data, list) and data:
        if all(isinstance(r, dict) for r in data):
            names = list(dict.fromkeys(k for r in data for k in r))
            return {str(n): [r.get(n) for r in data] for n in names}
        if all(isinstance(r, list) for r in data):  # tensors: positional features
            width = max(len(r) for r in data)
            return {
                f"input_{i}": [r[i] if i < len(r) else None for r in data] for i in range(width)
            }
        return {"input_0": list(data)}
    return {}


def _response_columns(response: Any, prediction_col: str) -> dict[str, list[Any]]:
    """``{"predictions": ...}`` as columns: scalars are ``prediction_col``, dicts expand."""
    predictions = response.get("predictions") if isinstance(response, dict) else None
    if isinstance(predictions, dict):
        return {str(k): v if isinstance(v, list) else [v] for k, v in predictions.items()}
    if not isinstance(predictions, list):
        return {}
    if predictions and all(isinstance(p, dict) for p in predictions):
        names = list(dict.fromkeys(k for p in predictions for k in p))
        return {str(n): [p.get(n) for p in predictions] for n in names}
    return {prediction_col: predictions}


def _array(values: list[Any]) -> pa.Array:
    """Values as the narrowest Arrow type that holds them all (text when mixed)."""
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    return array if not pa.types.is_null(array.type) else array.cast(pa.float64())


def unpack(log: pa.Table, spec: MonitorSpec) -> pa.Table:
    """A serving log's answered requests (status < 400, shadow copies left out) as one row
    per scored record, with ``request_id``, ``record_index``, ``timestamp``, ``model_version``."""
    keep = pc.less(log.column("status_code"), 400)
    if "shadow" in log.column_names:
        keep = pc.and_(keep, pc.invert(pc.fill_null(log.column("shadow"), False)))
    answered = log.filter(keep)
    prediction_col = spec.prediction_col or "prediction"
    columns: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}
    times = answered.column("timestamp_ms").to_pylist()
    versions = (
        answered.column("model_version").to_pylist()
        if "model_version" in answered.column_names
        else [None] * answered.num_rows
    )
    for row, (rid, req, resp) in enumerate(
        zip(
            answered.column("request_id").to_pylist(),
            answered.column("request").to_pylist(),
            answered.column("response").to_pylist(),
            strict=True,
        )
    ):
        features = _request_columns(_loads(req))
        outputs = _response_columns(_loads(resp), prediction_col)
        size = max((len(v) for v in (*features.values(), *outputs.values())), default=0)
        before = len(columns["request_id"])
        for name, values in (*features.items(), *outputs.items()):
            column = columns.setdefault(name, [None] * before)
            column.extend(values[:size] + [None] * (size - len(values)))
        for name, value in (
            ("request_id", rid),
            ("timestamp", times[row]),
            ("model_version", versions[row]),
        ):
            columns[name].extend([value] * size)
        columns["record_index"].extend(range(size))
        for column in columns.values():  # names this request did not have
            column.extend([None] * (before + size - len(column)))
    arrays = {name: _array(values) for name, values in columns.items()}
    arrays["request_id"] = pa.array(columns["request_id"], pa.string())
    arrays["record_index"] = pa.array(columns["record_index"], pa.int64())
    arrays["model_version"] = pa.array(
        [None if v is None else str(v) for v in columns["model_version"]], pa.string()
    )
    arrays["timestamp"] = pc.cast(
        pa.array(columns["timestamp"], pa.int64()).cast(pa.timestamp("ms")), TIMESTAMP
    )
    return pa.table(arrays)


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def serving_requests(log: pa.Table) -> pa.Table:
    """The request-level columns serving health is computed from (shadow copies left out)."""
    rows = log
    if "shadow" in log.column_names:
        rows = log.filter(pc.invert(pc.fill_null(log.column("shadow"), False)))
    return pa.table(
        {
            "timestamp": pc.cast(
                pc.cast(rows.column("timestamp_ms"), pa.timestamp("ms")), TIMESTAMP
            ),
            "model_version": pc.cast(rows.column("model_version"), pa.string()),
            "status_code": rows.column("status_code"),
            "execution_time_ms": pc.cast(rows.column("execution_time_ms"), pa.float64()),
        }
    )


# -- labels -----------------------------------------------------------------------------


class Labels:
    """A monitor's labels table: joined to records on the ``join_on`` columns."""

    def __init__(self, ws: Workspace, spec: MonitorSpec) -> None:
        assert spec.labels is not None
        self.ws = ws
        self.spec = spec
        self.table = TableName.parse(spec.labels.table, default_catalog=ws.target.catalog)
        self.on = list(spec.labels.join_on)
        self.label_col = spec.labels.label_col or spec.label_col or "label"
        self.target_col = spec.label_col or self.label_col
        self.version = ws.tables.delta(self.table).version()
        schema = ws.tables.schema(self.table)
        missing = [c for c in [*self.on, self.label_col] if schema.get_field_index(c) < 0]
        if missing:
            raise SchemaMismatchError(
                f"monitor {spec.name}: labels table {self.table} has no column(s) "
                f"{', '.join(missing)} (columns: {', '.join(schema.names)})"
            )
        check_label_type(spec, schema.field(self.label_col).type, f"{self.table}.{self.label_col}")
        self._labels: pa.Table | None = None

    def changed_keys(self, since: int | None) -> pa.Table | None:
        """The join keys of labels changed after ``since`` (None: every label is new)."""
        if since is None:
            return None
        if since >= self.version:
            return pa.table({c: pa.array([], pa.string()) for c in self.on})
        changed = self.ws.tables.changes(
            self.table, starting_version=since + 1, ending_version=self.version
        )
        return changed.select(self.on)

    def join(self, records: pa.Table) -> pa.Table:
        """``records`` with the label column from the labels table (the last row per key)."""
        missing = [c for c in self.on if c not in records.column_names]
        if missing:
            raise SchemaMismatchError(
                f"monitor {self.spec.name}: labels join on {', '.join(missing)}, which the "
                f"monitored rows lack (columns: {', '.join(records.column_names)})"
            )
        base = (
            records.drop_columns([self.target_col])
            if self.target_col in records.column_names
            else records
        )
        con = connect_duckdb()
        try:
            con.register("records_", base.append_column("_lf_row", pa.array(range(base.num_rows))))
            con.register("labels_", self._latest(con))
            on = " AND ".join(f'r."{c}" = l."{c}"' for c in self.on)
            joined = con.sql(
                f'SELECT r.*, l."_lf_label" AS "{self.target_col}" FROM records_ r LEFT JOIN '
                f"labels_ l ON {on} ORDER BY r._lf_row"
            ).to_arrow_table()
        finally:
            con.close()
        return pa.table(joined).drop_columns(["_lf_row"])

    def attach(self, records: pa.Table) -> pa.Table:
        """``records`` with the label column appended, joined on the key columns alone (the
        other columns keep their types)."""
        labelled = self.join(records.select(self.on)).column(self.target_col)
        if self.target_col in records.column_names:
            records = records.drop_columns([self.target_col])
        return records.append_column(self.target_col, labelled)

    def _latest(self, con: duckdb.DuckDBPyConnection) -> pa.Table:
        """The last label of each key, computed once (a window is joined column group by
        column group)."""
        if self._labels is None:
            labels = self.ws.tables.read(
                self.table, version=self.version, columns=[*self.on, self.label_col]
            )
            rows = labels.append_column("_lf_row", pa.array(range(labels.num_rows)))
            con.register("all_labels_", rows)
            keys = ", ".join(f'"{c}"' for c in self.on)
            self._labels = pa.table(
                con.sql(
                    f'SELECT {keys}, last("{self.label_col}" ORDER BY _lf_row) AS _lf_label '
                    f"FROM all_labels_ GROUP BY {keys}"
                ).to_arrow_table()
            )
            con.unregister("all_labels_")
        return self._labels


def check_label_type(spec: MonitorSpec, kind: pa.DataType, where: str) -> None:
    """Refuse a label column whose type cannot hold the monitor's labels."""
    family = type_kind(kind)
    allowed = (
        ("int", "float", "decimal")
        if spec.problem_type == "regression"
        else ("int", "string", "bool")
    )
    if family not in allowed:
        raise SchemaMismatchError(
            f"monitor {spec.name}: label column {where} is {kind}; a {spec.problem_type} "
            f"label must be {' or '.join(allowed)}"
        )


def check_columns(spec: MonitorSpec, schema: pa.Schema, table: TableName) -> None:
    """Every column the monitor names exists in the (unpacked) rows."""
    named: dict[str, list[str | None]] = {
        "timestamp_col": [spec.timestamp_col] if spec.profile != "snapshot" else [],
        "prediction_col": [spec.prediction_col],
        "probability_col": [spec.probability_col],
        "model_version_col": [spec.model_version_col],
        "columns": list(spec.columns or []),
        "drift": list(spec.drift),
    }
    if spec.labels is None:
        named["label_col"] = [spec.label_col]
    for field, columns in named.items():
        missing = [c for c in columns if c is not None and schema.get_field_index(c) < 0]
        if missing:
            raise SchemaMismatchError(
                f"monitor {spec.name}: {field} names column(s) {', '.join(missing)} that "
                f"{table} does not have (columns: {', '.join(schema.names)})"
            )
    if spec.label_col is not None and spec.labels is None:
        check_label_type(spec, schema.field(spec.label_col).type, f"{table}.{spec.label_col}")
