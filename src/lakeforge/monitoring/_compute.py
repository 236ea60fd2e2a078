"""One window's metrics: per model version and slice, a summary and a profile row per
column, the ``:table`` row (count, model quality, serving health, custom metrics), and
the drift rows comparing those summaries with another window's or the baseline's."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import connect_duckdb, parse_tree, tree_nodes, type_kind
from lakeforge.monitoring._drift import dataset_drift, drift_row
from lakeforge.monitoring._quality import classification_metrics, regression_metrics
from lakeforge.monitoring._sources import RECORD_COLUMNS
from lakeforge.monitoring._stats import ColumnSummary, profile_row, summarize
from lakeforge.monitoring._windows import Window
from lakeforge.project import MonitorSpec

TABLE = ":table"
COUNT = ":count"  # the rows of a slice, kept in a ':table' state row's metrics
_NUMERIC = ("int", "float", "decimal")
_CATEGORICAL = ("string", "bool")
_QUANTILES = (0.5, 0.95, 0.99)

SliceId = tuple[str | None, str | None]  # (slice_key, slice_value); (None, None): all rows
PartKey = tuple[str | None, SliceId]  # model version, slice
Read = Callable[[list[str]], list[pa.Table]]
"""Given column names, those columns of each window's rows."""

READ_VALUES = 2_000_000
"""At most this many values (rows x columns) of the windows profiled together are read at
once, in groups of columns (one column at least): 16 MB of doubles."""


@dataclass
class Summary:
    """One state row: a column's summary (None on ``:table``) and its custom metrics."""

    granularity: str | None
    window_start: datetime | None
    window_end: datetime | None
    model_version: str | None
    slice_key: str | None
    slice_value: str | None
    column_name: str
    data_type: str | None
    summary: ColumnSummary | None
    metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def where(self) -> tuple[str | None, str | None, str]:
        """Slice and column: how a row is matched with its counterpart in another window."""
        return (self.slice_key, self.slice_value, self.column_name)

    def state_row(self, log_type: str, version: int | None) -> dict[str, Any]:
        return {
            "monitor_name": None,  # set by the writer
            "log_type": log_type,
            "granularity": self.granularity,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "model_version": self.model_version,
            "slice_key": self.slice_key,
            "slice_value": self.slice_value,
            "column_name": self.column_name,
            "data_type": self.data_type,
            "summary": None if self.summary is None else self.summary.to_bytes(),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "logging_table_commit_version": version,
        }

    @classmethod
    def from_state(cls, row: dict[str, Any]) -> Summary:
        raw = row["summary"]
        return cls(
            row["granularity"],
            row["window_start"],
            row["window_end"],
            row["model_version"],
            row["slice_key"],
            row["slice_value"],
            row["column_name"],
            row["data_type"],
            None if raw is None else ColumnSummary.from_bytes(raw),
            json.loads(row["metrics"] or "{}"),
        )


def column_kind(kind: pa.DataType) -> str | None:
    """``numeric``, ``categorical``, or None for a column not profiled (times, nested)."""
    family = type_kind(kind)
    if family in _NUMERIC:
        return "numeric"
    if family in _CATEGORICAL:
        return "categorical"
    return None


@dataclass
class _Cuts:
    """One window's model versions, and for each version and slice the summaries made so
    far (``:table`` first) and the custom metrics of its columns."""

    versions: list[str | None]
    summaries: dict[PartKey, dict[str, Summary]] = field(default_factory=dict)
    custom: dict[PartKey, dict[str, dict[str, float | None]]] = field(default_factory=dict)

    def add(self, where: PartKey, name: str, data_type: str, column: ColumnSummary) -> None:
        """Add column ``name``'s summary to version and slice ``where``."""
        table = self.summaries[where][TABLE]
        self.summaries[where][name] = Summary(
            table.granularity,
            table.window_start,
            table.window_end,
            table.model_version,
            table.slice_key,
            table.slice_value,
            column_name=name,
            data_type=data_type,
            summary=column,
            metrics=self.custom[where].get(name, {}),
        )


class Profiler:
    """Computes the summaries, profile rows and drift rows of one monitor."""

    def __init__(self, spec: MonitorSpec, schema: pa.Schema, *, serving: bool) -> None:
        self.spec = spec
        self.serving = serving
        self.version_col = "model_version" if serving else spec.model_version_col
        skip = {spec.timestamp_col, self.version_col, *(RECORD_COLUMNS if serving else ())}
        wanted = spec.columns or [n for n in schema.names if n not in skip]
        self.columns: list[tuple[str, str, str]] = []  # name, kind, Arrow type as text
        for name in wanted:
            if schema.get_field_index(name) < 0 or name.startswith("_lf_"):
                continue
            kind = column_kind(schema.field(name).type)
            if kind is not None:
                self.columns.append((name, kind, str(schema.field(name).type)))
        self.label_col = spec.label_col or (spec.labels.label_col if spec.labels else None)
        self.names: list[str] = list(schema.names)

    # -- windows ----------------------------------------------------------------------

    def windows(
        self,
        read: Read,
        requests: Sequence[pa.Table | None],
        granularity: str | None,
        windows: Sequence[Window | None],
    ) -> list[Summary]:
        """Summaries of some windows' rows (and serving requests): every model version and
        slice, every column plus ``:table`` (whose metrics hold count, quality, health).

        ``read(columns)`` gives those columns of each window's rows. The columns that cut
        versions and slices and feed the ``:table`` metrics are read first; the profiled
        columns then follow in groups of at most ``READ_VALUES`` values, so memory follows
        a group of columns (at least one), not every column of the windows.
        """
        cuts = self._cut_columns()
        first_columns = _unique([*cuts, *self._table_columns])
        first = read(first_columns)
        found = [
            self._first_pass(rows, calls, granularity, window)
            for window, rows, calls in zip(windows, first, requests, strict=True)
        ]
        rest = [c for c in self.columns if c[0] not in first_columns]
        size = max(1, READ_VALUES // max(1, sum(t.num_rows for t in first)))
        for i in range(0, len(rest), size):
            group = rest[i : i + size]
            tables = read(_unique([*cuts, *(name for name, _k, _t in group)]))
            for rows, cut in zip(tables, found, strict=True):
                for version, where, part in self._parts(rows, cut.versions):
                    for name, kind, data_type in group:
                        column = summarize(part.column(name), kind)  # type: ignore[arg-type]
                        cut.add((version, where), name, data_type, column)
        order = [TABLE, *(name for name, _k, _t in self.columns)]
        return [part[name] for cut in found for part in cut.summaries.values() for name in order]

    def _first_pass(
        self,
        rows: pa.Table,
        requests: pa.Table | None,
        granularity: str | None,
        window: Window | None,
    ) -> _Cuts:
        """A window's model versions, each version and slice's ``:table`` summary, and the
        summaries of the profiled columns ``rows`` already holds."""
        start, end = window if window is not None else (None, None)
        cut = _Cuts(self._versions(rows, requests))
        health: dict[str | None, dict[str, float | None]] = {}
        for version, (key, value), part in self._parts(rows, cut.versions):
            if version not in health:
                health[version] = self._health(requests, version) if requests is not None else {}
            table_metrics: dict[str, float | None] = {COUNT: float(part.num_rows)}
            table_metrics.update(self._quality(part))
            if key is None:
                table_metrics.update(health[version])
            custom = self._custom(part)
            table_metrics.update(custom.get(TABLE, {}))
            where = (version, (key, value))
            cut.custom[where] = custom
            cut.summaries[where] = {
                TABLE: Summary(
                    granularity,
                    start,
                    end,
                    version,
                    key,
                    value,
                    column_name=TABLE,
                    data_type=None,
                    summary=None,
                    metrics=table_metrics,
                )
            }
            for name, kind, data_type in self.columns:
                if name in part.column_names:
                    column = summarize(part.column(name), kind)  # type: ignore[arg-type]
                    cut.add(where, name, data_type, column)
        return cut

    def _parts(
        self, rows: pa.Table, versions: list[str | None]
    ) -> Iterator[tuple[str | None, SliceId, pa.Table]]:
        """The rows of each model version and slice."""
        for version in versions:
            for where, part in self._slices(self._of_version(rows, version)):
                yield version, where, part

    def _cut_columns(self) -> list[str]:
        """The columns that cut a window into model versions and slices."""
        names = [self.version_col] if self.version_col else []
        return _unique(n for n in [*names, *self._sliced] if n in self.names)

    @cached_property
    def _sliced(self) -> list[str]:
        """The columns the slicing expressions read."""
        names: list[str] = []
        for expr in self.spec.slicing_exprs:
            name = expr.strip()
            names += [name] if name in self.names else self._referenced(expr)
        return names

    @cached_property
    def _table_columns(self) -> list[str]:
        """The columns the ``:table`` metrics (model quality, custom metrics) read."""
        spec = self.spec
        names: list[str] = []
        if spec.profile == "inference" and self.label_col and spec.prediction_col:
            names += [self.label_col, spec.prediction_col]
            names += [spec.probability_col] if spec.probability_col else []
        for metric in spec.custom_metrics:
            if metric.type != "aggregate":
                continue
            names += [c for c in metric.input_columns if c != TABLE]
            for column in metric.input_columns or [TABLE]:
                names += self._referenced(
                    metric.definition.replace("{{input_column}}", _ident(column))
                )
        return _unique(n for n in names if n in self.names)

    def _referenced(self, expr: str) -> list[str]:
        """The columns a SQL expression names, as DuckDB parses it (every column when it
        selects ``*`` or does not parse: DuckDB reports the error when it runs)."""
        parsed = parse_tree(f"SELECT ({expr}) FROM rows_")
        nodes = list(tree_nodes(parsed.get("statements", [])))
        if parsed.get("error") or any(n.get("class") == "STAR" for n in nodes):
            return list(self.names)
        named = {
            part.lower()
            for n in nodes
            if n.get("class") == "COLUMN_REF"
            for part in n.get("column_names", [])
        }
        return [name for name in self.names if name.lower() in named]

    def _versions(self, rows: pa.Table, requests: pa.Table | None) -> list[str | None]:
        if self.version_col is None:
            return [None]
        column = rows.column(self.version_col).cast(pa.string())
        seen: set[str | None] = set(pc.unique(column).to_pylist())
        if requests is not None:
            seen |= set(requests.column("model_version").to_pylist())
        if not seen:
            return [None]
        return sorted(seen, key=lambda v: (v is None, v or ""))

    def _of_version(self, rows: pa.Table, version: str | None) -> pa.Table:
        if self.version_col is None:
            return rows
        column = rows.column(self.version_col).cast(pa.string())
        mask = pc.is_null(column) if version is None else pc.equal(column, version)
        return rows.filter(pc.fill_null(mask, False))

    def _slices(self, rows: pa.Table) -> Iterable[tuple[SliceId, pa.Table]]:
        """All rows, then each slice: a column's values (the most frequent ``max_slices``),
        or an expression's true and false rows (evaluated by DuckDB)."""
        yield (None, None), rows
        if not self.spec.slicing_exprs:
            return
        con = connect_duckdb()
        try:
            con.register("rows_", rows)
            for expr in self.spec.slicing_exprs:
                name = expr.strip()
                if name in rows.column_names:
                    values = rows.column(name)
                    counts = pc.value_counts(values.drop_null()) if len(values) else None
                    if counts is None or len(counts) == 0:
                        continue
                    order = pc.sort_indices(
                        pa.table({"v": counts.field("values"), "n": counts.field("counts")}),
                        sort_keys=[("n", "descending"), ("v", "ascending")],
                    )
                    top = counts.field("values").take(order)[: self.spec.max_slices]
                    for value in top.to_pylist():
                        mask = pc.fill_null(pc.equal(values, pa.scalar(value, values.type)), False)
                        yield (name, _text(value)), rows.filter(mask)
                    continue
                try:
                    flags = con.sql(f"SELECT ({expr}) AS f FROM rows_").to_arrow_table().column("f")
                except Exception as exc:  # noqa: BLE001 - DuckDB's errors name the problem
                    raise LakeforgeError(
                        f"monitor {self.spec.name}: slicing expression {expr!r} failed: {exc}"
                    ) from None
                flags = pc.cast(flags, pa.bool_())
                for value in (True, False):
                    mask = pc.fill_null(pc.equal(flags, value), False)
                    if pc.any(mask).as_py():
                        yield (expr, str(value).lower()), rows.filter(mask)
        finally:
            con.close()

    def _quality(self, rows: pa.Table) -> dict[str, float | None]:
        spec = self.spec
        label, prediction = self.label_col, spec.prediction_col
        if spec.profile != "inference" or label is None or prediction is None:
            return {}
        if label not in rows.column_names or prediction not in rows.column_names:
            return {}
        known = pc.and_(pc.is_valid(rows.column(label)), pc.is_valid(rows.column(prediction)))
        labelled = rows.filter(known)
        if labelled.num_rows == 0:
            return {}
        y_true = labelled.column(label).to_numpy()
        y_pred = labelled.column(prediction).to_numpy()
        if spec.problem_type == "regression":
            return dict(regression_metrics(y_true, y_pred))
        score = None
        if spec.probability_col is not None and spec.probability_col in rows.column_names:
            score = labelled.column(spec.probability_col).to_numpy(zero_copy_only=False)
        return dict(classification_metrics(y_true, y_pred, score))

    def _health(self, requests: pa.Table, version: str | None) -> dict[str, float | None]:
        column = requests.column("model_version")
        mask = pc.is_null(column) if version is None else pc.equal(column, version)
        mine = requests.filter(pc.fill_null(mask, False))
        count = mine.num_rows
        health: dict[str, float | None] = {"request_count": float(count)}
        if count == 0:
            return health
        errors = pc.sum(pc.greater_equal(mine.column("status_code"), 400)).as_py() or 0
        health["error_rate"] = errors / count
        latency = mine.column("execution_time_ms")
        for q, value in zip(
            _QUANTILES, pc.quantile(latency, q=list(_QUANTILES)).to_pylist(), strict=True
        ):
            health[f"latency_p{round(q * 100)}_ms"] = value
        return health

    def _custom(self, rows: pa.Table) -> dict[str, dict[str, float | None]]:
        """Aggregate then derived custom metrics, by column (``:table`` for table level)."""
        aggregates = [m for m in self.spec.custom_metrics if m.type == "aggregate"]
        derived = [m for m in self.spec.custom_metrics if m.type == "derived"]
        if not aggregates and not derived:
            return {}
        found: dict[str, dict[str, float | None]] = {}
        con = connect_duckdb()
        try:
            con.register("rows_", rows)
            selects: list[tuple[str, str, str]] = []  # column, metric, SQL
            for metric in aggregates:
                for column in metric.input_columns:
                    sql = metric.definition.replace("{{input_column}}", _ident(column))
                    selects.append((column, metric.name, sql))
            values = self._run(con, "rows_", selects, "aggregate")
            for (column, name, _sql), value in zip(selects, values, strict=True):
                found.setdefault(column, {})[name] = value
            for metric in derived:
                for column in metric.input_columns:
                    known = found.get(column, {})
                    inner = (
                        ", ".join(
                            f"CAST({_number(v)} AS DOUBLE) AS {_ident(k)}" for k, v in known.items()
                        )
                        or "NULL AS _lf_none"
                    )
                    sql = metric.definition.replace("{{input_column}}", _ident(column))
                    found.setdefault(column, {})[metric.name] = self._run(
                        con, f"(SELECT {inner})", [(column, metric.name, sql)], "derived"
                    )[0]
        finally:
            con.close()
        return found

    def _run(
        self, con: Any, source: str, selects: Sequence[tuple[str, str, str]], what: str
    ) -> list[float | None]:
        if not selects:
            return []
        sql = ", ".join(f"CAST(({s}) AS DOUBLE)" for _c, _n, s in selects)
        try:
            row = con.execute(f"SELECT {sql} FROM {source}").fetchone()
        except Exception as exc:  # noqa: BLE001 - DuckDB's errors name the problem
            names = ", ".join(sorted({n for _c, n, _s in selects}))
            raise LakeforgeError(
                f"monitor {self.spec.name}: {what} custom metric(s) {names} failed: {exc}"
            ) from None
        return [_finite(v) for v in row]

    # -- drift ------------------------------------------------------------------------

    def drift(
        self,
        current: Sequence[Summary],
        reference: dict[tuple[str | None, str | None, str], Summary],
        drift_type: str,
    ) -> list[dict[str, Any]]:
        """Drift rows of one window and model version against ``reference`` (a previous
        window's or the baseline's summaries, by slice and column)."""
        found: list[dict[str, Any]] = []
        by_slice: dict[SliceId, list[dict[str, Any]]] = {}
        tables: list[tuple[Summary, Summary]] = []
        for summary in current:
            ref = reference.get(summary.where)
            if ref is None:
                continue
            if summary.column_name == TABLE:
                tables.append((summary, ref))
                continue
            assert summary.summary is not None and ref.summary is not None
            if _empty(summary) or _empty(ref):
                continue
            override = self.spec.drift.get(summary.column_name)
            metrics = drift_row(
                summary.summary,
                ref.summary,
                method=override.method if override else None,
                threshold=override.threshold if override else None,
                min_count=self.spec.drift_min_count,
            )
            row = {**self._keys(summary, ref, drift_type), **metrics}
            row.update(self._custom_drift(summary, ref))
            by_slice.setdefault((summary.slice_key, summary.slice_value), []).append(row)
            found.append(row)
        for summary, ref in tables:
            columns = by_slice.get((summary.slice_key, summary.slice_value), [])
            now, then = summary.metrics.get(COUNT), ref.metrics.get(COUNT)
            row = {**self._keys(summary, ref, drift_type)}
            if columns:
                row.update(dataset_drift(columns, share=self.spec.dataset_drift_share))
            row["count_delta"] = None if now is None or then is None else now - then
            row.update(self._custom_drift(summary, ref))
            found.append(row)
        return found

    def _keys(self, summary: Summary, ref: Summary, drift_type: str) -> dict[str, Any]:
        consecutive = drift_type == "CONSECUTIVE"
        return {
            "granularity": summary.granularity,
            "window_start": summary.window_start,
            "window_end": summary.window_end,
            "model_version": summary.model_version,
            "slice_key": summary.slice_key,
            "slice_value": summary.slice_value,
            "column_name": summary.column_name,
            "data_type": summary.data_type,
            "drift_type": drift_type,
            "window_cmp_start": ref.window_start if consecutive else None,
            "window_cmp_end": ref.window_end if consecutive else None,
        }

    def _custom_drift(self, summary: Summary, ref: Summary) -> dict[str, float | None]:
        found: dict[str, float | None] = {}
        for metric in self.spec.custom_metrics:
            if metric.type != "drift" or summary.column_name not in metric.input_columns:
                continue
            sql = (
                metric.definition.replace("{{current_df}}", "current_df")
                .replace("{{base_df}}", "base_df")
                .replace("{{input_column}}", _ident(summary.column_name))
            )
            frames = []
            for alias, metrics in (("current_df", summary.metrics), ("base_df", ref.metrics)):
                inner = (
                    ", ".join(
                        f"CAST({_number(v)} AS DOUBLE) AS {_ident(k)}"
                        for k, v in metrics.items()
                        if not k.startswith(":")
                    )
                    or "NULL AS _lf_none"
                )
                frames.append(f"(SELECT {inner}) {alias}")
            con = connect_duckdb()
            try:
                found[metric.name] = self._run(
                    con, ", ".join(frames), [(summary.column_name, metric.name, sql)], "drift"
                )[0]
            finally:
                con.close()
        return found

    # -- profile rows -------------------------------------------------------------------

    def profile_rows(self, summaries: Iterable[Summary], log_type: str) -> list[dict[str, Any]]:
        """The profile metrics rows of these summaries."""
        rows = []
        for summary in summaries:
            row: dict[str, Any] = {
                "window_start": summary.window_start,
                "window_end": summary.window_end,
                "granularity": summary.granularity,
                "model_version": summary.model_version,
                "slice_key": summary.slice_key,
                "slice_value": summary.slice_value,
                "column_name": summary.column_name,
                "data_type": summary.data_type,
                "log_type": log_type,
            }
            if summary.summary is not None:
                row.update(profile_row(summary.summary))
            row.update({k: v for k, v in summary.metrics.items() if not k.startswith(":")})
            if summary.column_name == TABLE:
                row["count"] = int(summary.metrics.get(COUNT) or 0)
                if "request_count" in row:
                    row["request_count"] = int(row["request_count"] or 0)
            rows.append(row)
        return rows


def _empty(summary: Summary) -> bool:
    count = getattr(summary.summary, "count", None)
    return count is not None and count == 0


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _number(value: float | None) -> str:
    return "NULL" if value is None or not math.isfinite(value) else repr(float(value))


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))
