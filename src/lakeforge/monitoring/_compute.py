"""One window's metrics: per model version and slice, a summary and a profile row per
column, the ``:table`` row (count, model quality, serving health, custom metrics), and
the drift rows comparing those summaries with another window's or the baseline's."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import connect_duckdb, type_kind
from lakeforge.monitoring._drift import dataset_drift, drift_row
from lakeforge.monitoring._quality import classification_metrics, regression_metrics
from lakeforge.monitoring._sources import RECORD_COLUMNS
from lakeforge.monitoring._stats import ColumnSummary, profile_row, summarize
from lakeforge.project import MonitorSpec

TABLE = ":table"
COUNT = ":count"  # the rows of a slice, kept in a ':table' state row's metrics
_NUMERIC = ("int", "float", "decimal")
_CATEGORICAL = ("string", "bool")
_QUANTILES = (0.5, 0.95, 0.99)

SliceId = tuple[str | None, str | None]  # (slice_key, slice_value); (None, None): all rows


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

    # -- one window -------------------------------------------------------------------

    def window(
        self,
        rows: pa.Table,
        requests: pa.Table | None,
        granularity: str | None,
        window: tuple[datetime, datetime] | None,
    ) -> list[Summary]:
        """Summaries of one window's rows (and serving requests): every model version and
        slice, every column plus ``:table`` (whose metrics hold count, quality, health)."""
        start, end = window if window is not None else (None, None)
        versions = self._versions(rows, requests)
        found: list[Summary] = []
        for version in versions:
            group = self._of_version(rows, version)
            health = self._health(requests, version) if requests is not None else {}
            for (key, value), part in self._slices(group):
                base = {"model_version": version, "slice_key": key, "slice_value": value}
                table_metrics: dict[str, float | None] = {COUNT: float(part.num_rows)}
                table_metrics.update(self._quality(part))
                if key is None:
                    table_metrics.update(health)
                custom = self._custom(part)
                table_metrics.update(custom.get(TABLE, {}))
                found.append(
                    Summary(
                        granularity,
                        start,
                        end,
                        **base,
                        column_name=TABLE,
                        data_type=None,
                        summary=None,
                        metrics=table_metrics,
                    )
                )
                for name, kind, data_type in self.columns:
                    found.append(
                        Summary(
                            granularity,
                            start,
                            end,
                            **base,
                            column_name=name,
                            data_type=data_type,
                            summary=summarize(part.column(name), kind),  # type: ignore[arg-type]
                            metrics=custom.get(name, {}),
                        )
                    )
        return found

    def _versions(self, rows: pa.Table, requests: pa.Table | None) -> list[str | None]:
        if self.version_col is None:
            return [None]
        seen: set[str | None] = set(rows.column(self.version_col).cast(pa.string()).to_pylist())
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
