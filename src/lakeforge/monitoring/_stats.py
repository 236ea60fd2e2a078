"""Column summaries: one pass over a column gives its profile and what drift needs later.

A :class:`ColumnSummary` keeps the profile numbers (counts, moments, quantiles, frequent
items) and the column's distribution:

* numeric: the exact sorted distinct values with their counts while there are at most
  ``max_distinct`` (default 100,000) of them; beyond that a quantile sketch of
  ``sketch_points`` (default 10,000) equally weighted order statistics, taken at ranks
  ``floor((i + 0.5) * n / K)``. The sketch's ECDF is within ``1 / (2K)`` of the true one
  everywhere, so a KS statistic moves by at most ``1 / (2K)`` per sketched side
  (``1 / K`` when both are), and a Wasserstein distance by at most ``(max - min) / (2K)``
  per sketched side. Exact summaries give exact statistics.
* categorical: the count of every value (as text) while there are at most
  ``max_categories`` (default 10,000); beyond that the top ``max_categories`` values and
  one "other" count, so memory is bounded whatever the cardinality.

Numeric statistics are over finite values: NaN counts as null (as in pandas), and
infinities count in ``count`` but in neither the distribution nor the moments (Evidently
drops them before testing drift too). Percentages are in 0..100 of ``count``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError

Kind = Literal["numeric", "categorical"]
FloatArray = npt.NDArray[np.float64]

QUANTILE_LEVELS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
FREQUENT_ITEMS = 10
MAX_DISTINCT = 100_000
SKETCH_POINTS = 10_000
MAX_CATEGORIES = 10_000

_META_KEY = b"lakeforge.column_summary"
_FORMAT = 1


@dataclass(frozen=True, eq=False)
class ColumnSummary:
    """One column of one window, summarised; see the module docstring for the rules."""

    kind: Kind
    data_type: str
    count: int
    nulls: int
    distinct: int
    valid: int = 0
    """Values the distribution covers: non-null and, for numbers, finite."""
    zeros: int | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    stddev: float | None = None
    median: float | None = None
    quantiles: tuple[float, ...] | None = None
    frequent_items: tuple[tuple[str, int], ...] = ()
    avg_length: float | None = None
    values: pa.Array = field(default_factory=lambda: pa.array([], pa.float64()))
    """Sorted distinct values (numeric, float64) or the kept categories (string)."""
    weights: FloatArray = field(default_factory=lambda: np.zeros(0))
    """The count (or sketch weight) of each of ``values``."""
    other: int = 0
    """Categorical: how many non-null values fell outside the kept categories."""
    exact: bool = True
    """Whether ``values``/``weights`` are the whole distribution (not a sketch or top-k)."""

    @property
    def integer(self) -> bool:
        """Whether the column's Arrow type is an integer type."""
        return self.data_type.startswith(("int", "uint"))

    def to_bytes(self) -> bytes:
        """Serialise as an Arrow IPC stream: the distribution as a batch, the rest as metadata."""
        scalars = {
            "format": _FORMAT,
            "kind": self.kind,
            "data_type": self.data_type,
            "count": self.count,
            "nulls": self.nulls,
            "distinct": self.distinct,
            "valid": self.valid,
            "zeros": self.zeros,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "stddev": self.stddev,
            "median": self.median,
            "quantiles": self.quantiles,
            "frequent_items": self.frequent_items,
            "avg_length": self.avg_length,
            "other": self.other,
            "exact": self.exact,
        }
        batch = pa.record_batch(
            {"value": self.values, "weight": pa.array(self.weights, pa.float64())},
        )
        schema = batch.schema.with_metadata({_META_KEY: json.dumps(scalars).encode()})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_batch(batch.replace_schema_metadata(schema.metadata))
        return bytes(sink.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> ColumnSummary:
        """Read back what :meth:`to_bytes` wrote."""
        try:
            table = pa.ipc.open_stream(data).read_all()
            meta = json.loads((table.schema.metadata or {})[_META_KEY])
        except (pa.ArrowInvalid, KeyError, ValueError) as exc:
            raise LakeforgeError(
                f"these bytes are not a serialised column summary ({exc})",
                hint="pass what ColumnSummary.to_bytes() returned",
            ) from exc
        if meta.pop("format") != _FORMAT:
            raise LakeforgeError("column summary written by an unknown format version")
        quantiles = meta.pop("quantiles")
        frequent = meta.pop("frequent_items")
        return cls(
            **meta,
            quantiles=None if quantiles is None else tuple(quantiles),
            frequent_items=tuple((str(item), int(n)) for item, n in frequent),
            values=table.column("value").combine_chunks(),
            weights=table.column("weight").to_numpy(),
        )


def infer_kind(data_type: pa.DataType) -> Kind | None:
    """Numbers are numeric; text, booleans and dictionaries categorical; others not profiled."""
    if pa.types.is_integer(data_type) or pa.types.is_floating(data_type):
        return "numeric"
    if pa.types.is_decimal(data_type):
        return "numeric"
    if (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
        or pa.types.is_boolean(data_type)
        or pa.types.is_dictionary(data_type)
    ):
        return "categorical"
    return None


def summarize(
    values: pa.ChunkedArray | pa.Array,
    kind: Kind,
    *,
    max_distinct: int = MAX_DISTINCT,
    sketch_points: int = SKETCH_POINTS,
    max_categories: int = MAX_CATEGORIES,
) -> ColumnSummary:
    """Summarise one column (all rows of one window) as ``kind``."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if kind == "numeric":
        return _summarize_numeric(values, max_distinct, sketch_points)
    if kind == "categorical":
        return _summarize_categorical(values, max_categories)
    raise LakeforgeError(f"unknown column kind {kind!r}", hint="use 'numeric' or 'categorical'")


def _summarize_numeric(array: pa.Array, max_distinct: int, sketch_points: int) -> ColumnSummary:
    data_type = array.type
    if pa.types.is_dictionary(data_type):
        array = array.dictionary_decode()
    if not (
        pa.types.is_integer(array.type)
        or pa.types.is_floating(array.type)
        or pa.types.is_decimal(array.type)
        or pa.types.is_boolean(array.type)
    ):
        raise LakeforgeError(
            f"a column of type {data_type} cannot be profiled as numeric",
            hint="numeric columns are integers, floats or decimals; profile text as 'categorical'",
        )
    count = len(array)
    raw = array.cast(pa.float64(), safe=False).drop_null().to_numpy()
    nan = np.isnan(raw)
    nulls = array.null_count + int(nan.sum())
    finite = np.sort(raw[np.isfinite(raw)])
    base: dict[str, Any] = {"kind": "numeric", "data_type": str(data_type), "count": count}
    n = len(finite)
    if n == 0:
        return ColumnSummary(**base, nulls=nulls, distinct=0, zeros=0)
    starts = np.flatnonzero(np.concatenate(([True], finite[1:] != finite[:-1])))
    distinct = finite[starts]
    counts = np.diff(np.append(starts, n)).astype(np.float64)
    if len(distinct) <= max_distinct:
        support, weights, exact = distinct, counts, True
    else:
        ranks = np.floor((np.arange(sketch_points) + 0.5) * n / sketch_points).astype(np.int64)
        support = finite[ranks]
        weights = np.full(sketch_points, n / sketch_points)
        exact = False
    quantiles = _sorted_quantiles(finite, np.array(QUANTILE_LEVELS))
    return ColumnSummary(
        **base,
        nulls=nulls,
        distinct=len(distinct),
        valid=n,
        zeros=int(np.count_nonzero(finite == 0)),
        min=float(finite[0]),
        max=float(finite[-1]),
        mean=float(np.mean(finite)),
        stddev=float(np.std(finite, ddof=1)) if n > 1 else None,
        median=float(quantiles[QUANTILE_LEVELS.index(0.5)]),
        quantiles=tuple(float(q) for q in quantiles),
        values=pa.array(support, pa.float64()),
        weights=weights,
        exact=exact,
    )


def _sorted_quantiles(ordered: FloatArray, levels: FloatArray) -> FloatArray:
    """``np.quantile`` (linear interpolation) of an already sorted array, without its
    partitioning pass."""
    position = (len(ordered) - 1) * levels
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    low, high = ordered[below], ordered[above]
    return low + (position - below) * (high - low)


def _summarize_categorical(array: pa.Array, max_categories: int) -> ColumnSummary:
    data_type = array.type
    if pa.types.is_dictionary(data_type):
        array = array.dictionary_decode()
    text = _is_text(array.type)
    try:
        array = array.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise LakeforgeError(
            f"a column of type {data_type} cannot be profiled as categorical ({exc})",
            hint="categorical columns are text, booleans, dictionaries or numbers",
        ) from exc
    base: dict[str, Any] = {
        "kind": "categorical",
        "data_type": str(data_type),
        "count": len(array),
        "nulls": array.null_count,
    }
    present = array.drop_null()
    if len(present) == 0:
        return ColumnSummary(**base, distinct=0, values=pa.array([], pa.string()))
    counted = pc.value_counts(present)
    order = pc.sort_indices(
        pa.table({"v": counted.field("values"), "n": counted.field("counts")}),
        sort_keys=[("n", "descending"), ("v", "ascending")],
    )
    # A take (not a slice) so that the summary holds only what it keeps.
    kept = counted.take(order.slice(0, max_categories))
    items, counts = kept.field("values"), kept.field("counts").to_numpy()
    top = min(len(items), FREQUENT_ITEMS)
    return ColumnSummary(
        **base,
        distinct=len(counted),
        valid=len(present),
        frequent_items=tuple(
            zip(items.slice(0, top).to_pylist(), counts[:top].tolist(), strict=True)
        ),
        avg_length=float(pc.mean(pc.utf8_length(present)).as_py()) if text else None,
        values=items,
        weights=counts.astype(np.float64),
        other=len(present) - int(counts.sum()),
        exact=len(items) == len(counted),
    )


def _is_text(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def profile_row(summary: ColumnSummary) -> dict[str, Any]:
    """The profile_metrics metric columns for one summarised column."""
    count = summary.count

    def percent(part: int | None) -> float | None:
        return None if part is None or count == 0 else 100.0 * part / count

    return {
        "count": count,
        "num_nulls": summary.nulls,
        "percent_null": percent(summary.nulls),
        "num_zeros": summary.zeros,
        "percent_zeros": percent(summary.zeros),
        "distinct_count": summary.distinct,
        "percent_distinct": percent(summary.distinct),
        "min": summary.min,
        "max": summary.max,
        "avg": summary.mean,
        "stddev": summary.stddev,
        "median": summary.median,
        "quantiles": None if summary.quantiles is None else list(summary.quantiles),
        "frequent_items": (
            [{"item": item, "count": n} for item, n in summary.frequent_items]
            if summary.kind == "categorical"
            else None
        ),
        "avg_length": summary.avg_length,
    }
