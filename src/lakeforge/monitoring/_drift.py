"""Drift between two column summaries: the statistics, and Evidently's decision.

Statistics (the drift_metrics columns), from the summaries' distributions:

* numeric: the two-sample KS statistic and p-value (``scipy.stats.ks_2samp``'s, mode
  ``'auto'``: exact when both sides have at most 10,000 values, else Smirnov's asymptotic
  ``kstwo``), the Wasserstein distance (the integral of |F_ref - F_cur| that
  ``scipy.stats.wasserstein_distance`` computes, on the same weighted ECDFs as KS);
* categorical: the chi² statistic and p-value as Evidently computes them (expected counts
  from the reference shares scaled to the current count, over the union of categories);
* both: PSI over 10 reference-quantile bins (numeric: bins cut at the reference deciles,
  open at both ends; categorical: one bin per category), shares floored at 1e-4,
  ``sum((cur - ref) * ln(cur / ref))``; Jensen–Shannon distance (natural log, as
  Evidently), total variation and L∞ over Evidently's binning (value counts, or for a
  numeric reference with more than 20 distinct values, Sturges bins over both sides);
  chi² is also given for numbers binned by value; deltas of count, mean and null share.

Decision: Evidently 0.7's ``DataDriftPreset`` defaults (``get_stattest``): with at most
1,000 reference values, KS (numbers with more than 5 distinct values over both sides),
chi² (more than 2) or the Z-test for proportions (2 or fewer); with more, Wasserstein
normed by the reference's standard deviation (numbers with more than 5 distinct values)
or Jensen–Shannon. Thresholds 0.05 for p-values (drift when p <= 0.05 for KS, p < 0.05
for chi² and Z), 0.1 for distances (drift when >= 0.1). Nulls and infinities are left out
first, as Evidently does. A side without values gives no decision (Evidently refuses it).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats
from scipy.spatial import distance

from lakeforge.errors import ConfigError
from lakeforge.monitoring._stats import ColumnSummary, FloatArray, Kind
from lakeforge.project import DRIFT_STATISTICS

PSI_BINS = 10
PSI_EPSILON = 1e-4
DATASET_DRIFT_SHARE = 0.5

_KS_EXACT_MAX = 10_000  # ks_2samp's MAX_AUTO_N
_SMALL_REFERENCE = 1_000
_LOW_CARDINALITY = 5
_STURGES_MIN_DISTINCT = 20


@dataclass(frozen=True)
class DriftMethod:
    """One of Evidently's drift tests: what it applies to, its default threshold and rule."""

    name: str
    kinds: tuple[Kind, ...]
    threshold: float
    rule: Literal["p <= t", "p < t", ">= t"]

    def detected(self, score: float, threshold: float) -> bool:
        if self.rule == "p <= t":
            return score <= threshold
        if self.rule == "p < t":
            return score < threshold
        return score >= threshold


METHODS: dict[str, DriftMethod] = {
    m.name: m
    for m in (
        DriftMethod("ks", ("numeric",), 0.05, "p <= t"),
        DriftMethod("chisquare", ("categorical",), 0.05, "p < t"),
        DriftMethod("z", ("categorical",), 0.05, "p < t"),
        DriftMethod("wasserstein", ("numeric",), 0.1, ">= t"),
        DriftMethod("jensenshannon", ("numeric", "categorical"), 0.1, ">= t"),
        DriftMethod("psi", ("numeric", "categorical"), 0.1, ">= t"),
    )
}


def check_method(method: str, kind: Kind) -> DriftMethod:
    """The drift method called ``method``, refused when it does not apply to ``kind``."""
    found = METHODS.get(method)
    if found is None:
        raise ConfigError(
            f"unknown drift method {method!r}", hint=f"use one of {', '.join(METHODS)}"
        )
    if kind not in found.kinds:
        allowed = [name for name, m in METHODS.items() if kind in m.kinds]
        raise ConfigError(
            f"drift method {method!r} does not apply to a {kind} column",
            hint=f"for {kind} columns use one of {', '.join(allowed)}",
        )
    return found


def default_method(current: ColumnSummary, reference: ColumnSummary) -> DriftMethod:
    """The test Evidently's ``DataDriftPreset`` picks for these two columns."""
    return _Pair(current, reference).default_method()


def drift_row(
    current: ColumnSummary,
    reference: ColumnSummary,
    *,
    method: str | None = None,
    threshold: float | None = None,
    min_count: int = 1,
) -> dict[str, Any]:
    """The drift_metrics metric columns for ``current`` against ``reference``.

    ``method`` and ``threshold`` override Evidently's defaults for this column. With fewer
    than ``min_count`` values in ``current`` the statistics are kept but there is no
    verdict (``drift_detected`` None).
    """
    if current.kind != reference.kind:
        raise ConfigError(
            f"cannot compare a {current.kind} column with a {reference.kind} one",
            hint="profile the column with the same kind in both windows",
        )
    chosen = None if method is None else check_method(method, current.kind)
    row: dict[str, Any] = dict.fromkeys(DRIFT_STATISTICS)
    row.update(_deltas(current, reference))
    row.update(drift_method=None, drift_score=None, drift_threshold=None, drift_detected=None)
    if current.valid == 0 or reference.valid == 0:
        return row
    pair = _Pair(current, reference)
    ref_p, cur_p, by_value = pair.evidently_bins()
    row["js_distance"] = float(distance.jensenshannon(ref_p, cur_p))
    row["tv_distance"] = float(0.5 * np.abs(ref_p - cur_p).sum())
    row["l_infinity_distance"] = float(np.abs(ref_p - cur_p).max())
    row["population_stability_index"] = pair.psi()
    if by_value:
        row["chi_squared_statistic"], row["chi_squared_pvalue"] = pair.chisquare()
    if current.kind == "numeric":
        row["ks_statistic"], row["ks_pvalue"] = pair.ks()
        row["wasserstein_distance"] = pair.wasserstein()
    chosen = chosen or pair.default_method()
    score = pair.score(chosen.name, row)
    limit = chosen.threshold if threshold is None else float(threshold)
    row.update(
        drift_method=chosen.name,
        drift_score=score,
        drift_threshold=limit,
        drift_detected=chosen.detected(score, limit) if current.valid >= min_count else None,
    )
    return row


def dataset_drift(
    rows: Iterable[Mapping[str, Any]], share: float = DATASET_DRIFT_SHARE
) -> dict[str, Any]:
    """The ':table' drift metrics: the share of drifted columns and Evidently's verdict
    (drift when that share is at least ``share``). Columns without a decision are left out."""
    decided = [bool(r["drift_detected"]) for r in rows if r.get("drift_detected") is not None]
    if not decided:
        return {"drift_share": None, "dataset_drift": None}
    drifted = sum(decided) / len(decided)
    return {"drift_share": drifted, "dataset_drift": drifted >= share}


def ks_2samp(reference: ColumnSummary, current: ColumnSummary) -> tuple[float, float]:
    """KS statistic and two-sided p-value, as ``scipy.stats.ks_2samp(reference, current)``."""
    return _Pair(current, reference).ks()


def population_stability_index(current: ColumnSummary, reference: ColumnSummary) -> float:
    """PSI over the reference's deciles (numbers) or categories, shares floored at 1e-4."""
    return _Pair(current, reference).psi()


def _deltas(current: ColumnSummary, reference: ColumnSummary) -> dict[str, float | None]:
    def null_share(s: ColumnSummary) -> float | None:
        return None if s.count == 0 else 100.0 * s.nulls / s.count

    cur_null, ref_null = null_share(current), null_share(reference)
    return {
        "count_delta": float(current.count - reference.count),
        "avg_delta": (
            None
            if current.mean is None or reference.mean is None
            else current.mean - reference.mean
        ),
        "percent_null_delta": None if cur_null is None or ref_null is None else cur_null - ref_null,
    }


class _Pair:
    """Two summaries of one column (neither empty), with what their statistics share
    computed once: for numbers, both distributions on the union of their values."""

    def __init__(self, current: ColumnSummary, reference: ColumnSummary) -> None:
        self.current = current
        self.reference = reference
        self.n_ref, self.n_cur = reference.valid, current.valid
        self._aligned: tuple[pa.Array | FloatArray, FloatArray, FloatArray] | None = None
        self._cumulative: tuple[FloatArray, FloatArray] | None = None

    # -- shared pieces -------------------------------------------------------------------

    def aligned(self) -> tuple[pa.Array | FloatArray, FloatArray, FloatArray]:
        """The union of both sides' values (sorted), and each side's count on it; plus one
        'other' bin when either side kept only its top categories."""
        if self._aligned is None:
            self._aligned = self._align()
        return self._aligned

    def _align(self) -> tuple[pa.Array | FloatArray, FloatArray, FloatArray]:
        cur, ref = self.current, self.reference
        if cur.kind == "numeric":
            v_ref, w_ref = _numbers(ref)
            v_cur, w_cur = _numbers(cur)
            # Both sides are sorted: a stable sort (timsort) just merges the two runs.
            keys = np.concatenate((v_ref, v_cur))
            keys.sort(kind="stable")
            keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
            on_ref, on_cur = np.zeros(len(keys)), np.zeros(len(keys))
            on_ref[np.searchsorted(keys, v_ref)] = w_ref
            on_cur[np.searchsorted(keys, v_cur)] = w_cur
            return keys, on_ref, on_cur
        strings = pc.unique(pa.concat_arrays([ref.values, cur.values]))
        strings = strings.take(pc.sort_indices(strings))
        on_ref, on_cur = _counts_on(strings, ref), _counts_on(strings, cur)
        if ref.other or cur.other:
            on_ref, on_cur = np.append(on_ref, ref.other), np.append(on_cur, cur.other)
        return strings, on_ref, on_cur

    def n_values(self) -> int:
        """Distinct values over both sides, as Evidently counts them (a lower bound when a
        side is a sketch or top-k, which only happens far above the counts that matter)."""
        if not (self.current.exact and self.reference.exact):
            return max(self.current.distinct, self.reference.distinct)
        return len(self.aligned()[1])

    def cumulative(self) -> tuple[FloatArray, FloatArray]:
        """Each side's weight of the first i aligned values, for i = 0..len."""
        if self._cumulative is None:
            _, on_ref, on_cur = self.aligned()
            zero = np.zeros(1)
            self._cumulative = (
                np.concatenate((zero, np.cumsum(on_ref))),
                np.concatenate((zero, np.cumsum(on_cur))),
            )
        return self._cumulative

    def cdf_difference(self) -> tuple[FloatArray, FloatArray]:
        """Numbers: the union of values, and reference ECDF minus current ECDF on it."""
        keys = self.aligned()[0]
        assert isinstance(keys, np.ndarray)
        cum_ref, cum_cur = self.cumulative()
        return keys, cum_ref[1:] / self.n_ref - cum_cur[1:] / self.n_cur

    # -- the statistics ------------------------------------------------------------------

    def default_method(self) -> DriftMethod:
        n_values = self.n_values()
        numeric = self.current.kind == "numeric"
        if self.n_ref <= _SMALL_REFERENCE:
            if numeric and n_values > _LOW_CARDINALITY:
                return METHODS["ks"]
            return METHODS["chisquare"] if n_values > 2 else METHODS["z"]
        if numeric and n_values > _LOW_CARDINALITY:
            return METHODS["wasserstein"]
        return METHODS["jensenshannon"]

    def ks(self) -> tuple[float, float]:
        """``ks_2samp(reference, current)``: exact below 10,001 values a side, else Smirnov's
        asymptotic distribution on the statistic from the ECDFs."""
        ref, cur = self.reference, self.current
        if max(self.n_ref, self.n_cur) <= _KS_EXACT_MAX and ref.exact and cur.exact:
            # Small enough to hand SciPy the samples themselves: its exact distribution.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # exact -> asymptotic fallback
                result = stats.ks_2samp(_expand(ref), _expand(cur))
            return float(result.statistic), float(result.pvalue)
        _, diff = self.cdf_difference()
        d = float(max(diff.max(), np.clip(-diff.min(), 0, 1)))
        m, n = sorted([float(self.n_ref), float(self.n_cur)], reverse=True)
        p = stats.kstwo.sf(d, np.round(m * n / (m + n)))
        return d, float(np.clip(p, 0, 1))

    def wasserstein(self) -> float:
        """The integral of |F_ref - F_cur|, which ``scipy.stats.wasserstein_distance``
        computes, here on the ECDFs already at hand."""
        keys, diff = self.cdf_difference()
        return float(np.sum(np.abs(diff[:-1]) * np.diff(keys)))

    def psi(self) -> float:
        """PSI over the reference's deciles (numbers) or categories, shares floored at 1e-4."""
        if self.current.kind == "numeric":
            v_ref, w_ref = _numbers(self.reference)
            levels = np.arange(1, PSI_BINS) / PSI_BINS
            edges = np.unique(_weighted_quantiles(v_ref, w_ref, self.n_ref, levels))
            keys = self.aligned()[0]
            assert isinstance(keys, np.ndarray)
            at = np.searchsorted(keys, edges, side="right")  # bins (-inf, e1], ..., (e9, inf)
            cum_ref, cum_cur = self.cumulative()
            ref = np.diff(cum_ref[at], prepend=0.0, append=self.n_ref)
            cur = np.diff(cum_cur[at], prepend=0.0, append=self.n_cur)
        else:
            _, ref, cur = self.aligned()
        ref = np.maximum(ref / self.n_ref, PSI_EPSILON)
        cur = np.maximum(cur / self.n_cur, PSI_EPSILON)
        return float(np.sum((cur - ref) * np.log(cur / ref)))

    def chisquare(self) -> tuple[float, float]:
        """Evidently's chi²: observed current counts against reference counts scaled to them."""
        _, ref, cur = self.aligned()
        expected = ref * (self.n_cur / self.n_ref)
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # a category new in current: inf
            result = stats.chisquare(cur, expected)
        return float(result.statistic), float(result.pvalue)

    def z_test(self) -> float:
        """Evidently's Z-test for two proportions: the share of values other than the first
        (sorted) value, two-sided, ``2 * (1 - Phi(|z|))``."""
        _, ref, cur = self.aligned()
        if len(ref) == 1:
            return 1.0
        n1, n2 = self.n_ref, self.n_cur
        p1, p2 = (n1 - ref[0]) / n1, (n2 - cur[0]) / n2
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
        return float(2 * (1 - stats.norm.cdf(np.abs(z))))

    def evidently_bins(self, *, fill_zeros: bool = False) -> tuple[FloatArray, FloatArray, bool]:
        """Evidently's ``get_binned_data``: reference and current shares per bin, and whether
        the bins are the values themselves (else Sturges bins over both sides)."""
        keys, on_ref, on_cur = self.aligned()
        numeric = self.current.kind == "numeric"
        by_value = not (numeric and self.reference.distinct > _STURGES_MIN_DISTINCT)
        if by_value:
            ref, cur = on_ref, on_cur
        else:
            assert isinstance(keys, np.ndarray)
            edges = self.sturges_edges()
            # np.histogram's bins: closed on the left, the last one on both sides.
            at = np.concatenate(
                (
                    np.searchsorted(keys, edges[:-1], side="left"),
                    np.searchsorted(keys, edges[-1:], side="right"),
                )
            )
            cum_ref, cum_cur = self.cumulative()
            ref, cur = np.diff(cum_ref[at]), np.diff(cum_cur[at])
        ref_p, cur_p = ref / self.n_ref, cur / self.n_cur
        if fill_zeros:
            ref_p, cur_p = _fill_zeros(ref_p), _fill_zeros(cur_p)
        return ref_p, cur_p, by_value

    def sturges_edges(self) -> FloatArray:
        """``np.histogram_bin_edges(both sides, bins='sturges')`` from the summaries."""
        cur, ref = self.current, self.reference
        assert cur.min is not None and ref.min is not None
        assert cur.max is not None and ref.max is not None
        low, high = min(cur.min, ref.min), max(cur.max, ref.max)
        if low == high:
            low, high = low - 0.5, high + 0.5
        width = (high - low) / (np.log2(self.n_cur + self.n_ref) + 1.0)
        # pandas keeps an integer column without nulls as integers; NumPy then widens bins to 1.
        if cur.integer and ref.integer and cur.nulls == ref.nulls == 0:
            width = max(width, 1.0)
        return np.linspace(low, high, int(np.ceil((high - low) / width)) + 1)

    def score(self, method: str, row: dict[str, Any]) -> float:
        """The drift score of ``method``, from the row's statistics where it has them."""
        if method == "ks":
            return float(row["ks_pvalue"])
        if method == "chisquare":
            return self.chisquare()[1]
        if method == "z":
            return self.z_test()
        if method == "wasserstein":
            v, w = _numbers(self.reference)
            mean = np.sum(v * w) / self.n_ref
            std = math.sqrt(float(np.sum(w * (v - mean) ** 2)) / self.n_ref)
            return float(row["wasserstein_distance"]) / max(std, 0.001)
        if method == "jensenshannon":
            return float(row["js_distance"])
        ref_p, cur_p, _ = self.evidently_bins(fill_zeros=True)  # psi
        return float(np.sum((ref_p - cur_p) * np.log(ref_p / cur_p)))


# -- distributions ----------------------------------------------------------------------


def _numbers(summary: ColumnSummary) -> tuple[FloatArray, FloatArray]:
    return summary.values.to_numpy(zero_copy_only=False), summary.weights


def _expand(summary: ColumnSummary) -> FloatArray:
    values, weights = _numbers(summary)
    return np.repeat(values, weights.astype(np.int64))


def _fill_zeros(shares: FloatArray) -> FloatArray:
    """Evidently's ``feel_zeroes``: empty bins get a small share."""
    smallest = float(shares[shares != 0].min())
    return np.where(shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001, shares)


def _weighted_quantiles(
    values: FloatArray, weights: FloatArray, n: int, levels: FloatArray
) -> FloatArray:
    """Quantiles with linear interpolation between order statistics (NumPy's default)."""
    cumulative = np.cumsum(weights)
    position = (n - 1) * levels
    below = np.floor(position)

    def order_statistic(k: FloatArray) -> FloatArray:
        return values[np.minimum(np.searchsorted(cumulative, k, side="right"), len(values) - 1)]

    low, high = order_statistic(below), order_statistic(np.minimum(below + 1, n - 1))
    return low + (position - below) * (high - low)


def _counts_on(keys: pa.Array, summary: ColumnSummary) -> FloatArray:
    counts = np.zeros(len(keys))
    where = pc.index_in(summary.values, value_set=keys).to_numpy(zero_copy_only=False)
    counts[where.astype(np.int64)] = summary.weights
    return counts
