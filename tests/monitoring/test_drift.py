"""Drift statistics against SciPy and NumPy references; Evidently's method choice."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from scipy import stats

from lakeforge.errors import ConfigError
from lakeforge.monitoring._drift import METHODS, _Pair, dataset_drift, default_method, drift_row
from lakeforge.monitoring._stats import ColumnSummary, summarize

Floats = npt.NDArray[np.float64]
RNG = np.random.default_rng(11)

# (name, reference sample, current sample): continuous, heavy ties, tiny, unequal sizes,
# both of ks_2samp's regimes (exact up to 10,000 values, asymptotic beyond).
SAMPLES: list[tuple[str, Floats, Floats]] = [
    ("normal", RNG.normal(0, 1, 800), RNG.normal(0.1, 1, 700)),
    ("ties", RNG.integers(0, 6, 900).astype(float), RNG.integers(0, 7, 1100).astype(float)),
    ("tiny", np.array([1.0, 2.0, 3.0]), np.array([2.5, 4.0, 5.0, 6.0, 0.5])),
    ("equal_n", RNG.exponential(1, 400), RNG.exponential(1.3, 400)),
    ("identical", np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 2.0, 2.0, 3.0])),
    ("disjoint", RNG.uniform(0, 1, 300), RNG.uniform(2, 3, 250)),
    ("asymptotic", RNG.normal(0, 1, 20_000), RNG.normal(0.02, 1, 15_000)),
    ("one_side_large", RNG.gamma(2, 1, 300), RNG.gamma(2, 1.1, 12_000)),
]
CATEGORIES: list[tuple[str, list[str], list[str]]] = [
    ("shares", list(RNG.choice(list("abcde"), 500)), list(RNG.choice(list("abcde"), 450))),
    ("new", list(RNG.choice(list("abc"), 300)), list(RNG.choice(list("abcd"), 300))),
    ("gone", list(RNG.choice(list("abcd"), 300)), list(RNG.choice(list("abc"), 200))),
]


def num(values: Any) -> ColumnSummary:
    return summarize(pa.array(values, pa.float64()), "numeric")


def cat(values: Any) -> ColumnSummary:
    return summarize(pa.array(values, pa.string()), "categorical")


def by_value(ref: list[Any], cur: list[Any]) -> tuple[Floats, Floats]:
    keys = sorted(set(ref) | set(cur))
    return (
        np.array([ref.count(k) for k in keys], float),
        np.array([cur.count(k) for k in keys], float),
    )


def numpy_js(p: Floats, q: Floats) -> float:
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: Floats) -> float:
        keep = a > 0
        return float(np.sum(a[keep] * np.log(a[keep] / m[keep])))

    return float(np.sqrt((kl(p) + kl(q)) / 2))


def numpy_psi_numeric(ref: Floats, cur: Floats) -> float:
    edges = np.unique(np.quantile(ref, np.arange(1, 10) / 10))
    r = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1)
    r, c = np.maximum(r / len(ref), 1e-4), np.maximum(c / len(cur), 1e-4)
    return float(np.sum((c - r) * np.log(c / r)))


def evidently_bins(ref: Floats, cur: Floats) -> tuple[Floats, Floats]:
    """Evidently's get_binned_data for numbers, on the raw samples."""
    if len(np.unique(ref)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        return np.histogram(ref, edges)[0] / len(ref), np.histogram(cur, edges)[0] / len(cur)
    r, c = by_value(list(ref), list(cur))
    return r / len(ref), c / len(cur)


@pytest.mark.parametrize(("name", "ref", "cur"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_ks_and_wasserstein_equal_scipy(name: str, ref: Floats, cur: Floats) -> None:
    row = drift_row(num(cur), num(ref))
    expected = stats.ks_2samp(ref, cur)
    assert row["ks_statistic"] == pytest.approx(expected.statistic, abs=1e-6)
    assert row["ks_pvalue"] == pytest.approx(expected.pvalue, abs=1e-6)
    assert row["wasserstein_distance"] == pytest.approx(
        stats.wasserstein_distance(ref, cur), rel=1e-6, abs=1e-9
    )


@pytest.mark.parametrize(("name", "ref", "cur"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_psi_js_tv_linf_equal_numpy_references(name: str, ref: Floats, cur: Floats) -> None:
    row = drift_row(num(cur), num(ref))
    assert row["population_stability_index"] == pytest.approx(
        numpy_psi_numeric(ref, cur), rel=1e-9, abs=1e-12
    )
    r, c = evidently_bins(ref, cur)
    assert row["js_distance"] == pytest.approx(numpy_js(r, c), rel=1e-9, abs=1e-12)
    assert row["tv_distance"] == pytest.approx(0.5 * np.abs(r - c).sum(), rel=1e-9, abs=1e-12)
    assert row["l_infinity_distance"] == pytest.approx(np.abs(r - c).max(), rel=1e-9)


@pytest.mark.parametrize(("name", "ref", "cur"), CATEGORIES, ids=[c[0] for c in CATEGORIES])
def test_categorical_statistics_equal_scipy_and_numpy(
    name: str, ref: list[str], cur: list[str]
) -> None:
    row = drift_row(cat(cur), cat(ref))
    r, c = by_value(ref, cur)
    expected = r * len(cur) / len(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "new": a zero expected count
        chi = stats.chisquare(c, expected)
    assert row["chi_squared_statistic"] == pytest.approx(chi.statistic, rel=1e-6)
    assert row["chi_squared_pvalue"] == pytest.approx(chi.pvalue, abs=1e-6)
    p, q = r / len(ref), c / len(cur)
    assert row["js_distance"] == pytest.approx(numpy_js(p, q), rel=1e-9)
    assert row["tv_distance"] == pytest.approx(0.5 * np.abs(p - q).sum(), rel=1e-9)
    assert row["l_infinity_distance"] == pytest.approx(np.abs(p - q).max(), rel=1e-9)
    pe, qe = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
    assert row["population_stability_index"] == pytest.approx(
        np.sum((qe - pe) * np.log(qe / pe)), rel=1e-9
    )
    assert row["ks_statistic"] is None and row["wasserstein_distance"] is None


def test_low_cardinality_numbers_get_chi_squared_by_value() -> None:
    ref, cur = [0.0, 1.0, 1.0, 2.0] * 50, [0.0, 1.0, 2.0, 2.0] * 40
    row = drift_row(num(cur), num(ref))
    r, c = by_value(ref, cur)
    chi = stats.chisquare(c, r * len(cur) / len(ref))
    assert row["chi_squared_pvalue"] == pytest.approx(chi.pvalue, abs=1e-9)
    assert row["drift_method"] == "chisquare" and row["drift_detected"] == (chi.pvalue < 0.05)


@pytest.mark.parametrize(
    ("n_ref", "kind", "n_values", "expected"),
    [
        (1000, "numeric", 6, "ks"),
        (1000, "numeric", 5, "chisquare"),
        (1000, "numeric", 3, "chisquare"),
        (1000, "numeric", 2, "z"),
        (1000, "categorical", 3, "chisquare"),
        (1000, "categorical", 2, "z"),
        (1001, "numeric", 6, "wasserstein"),
        (1001, "numeric", 5, "jensenshannon"),
        (1001, "categorical", 2, "jensenshannon"),
        (1001, "categorical", 50, "jensenshannon"),
    ],
)
def test_default_method_follows_evidentlys_get_stattest(
    n_ref: int, kind: str, n_values: int, expected: str
) -> None:
    # The reference has n_values - 1 distinct values, the current one more: Evidently
    # counts the distinct values of both together.
    ref = np.arange(n_ref) % (n_values - 1) if n_values > 2 else np.arange(n_ref) % 2
    cur = np.arange(n_ref) % n_values

    def make(values: Floats) -> ColumnSummary:
        if kind == "numeric":
            return num(values.astype(float))
        return cat(values.astype(str))

    assert default_method(make(cur), make(ref)).name == expected
    # Nulls do not count towards the reference size, as Evidently drops them first.
    padded = pa.array(list(ref[:1000].astype(float)) + [None] * 5, pa.float64())
    assert summarize(padded, "numeric").valid == 1000


def test_defaults_thresholds_and_comparisons_are_evidentlys() -> None:
    assert {m: (METHODS[m].threshold, METHODS[m].rule) for m in METHODS} == {
        "ks": (0.05, "p <= t"),
        "chisquare": (0.05, "p < t"),
        "z": (0.05, "p < t"),
        "wasserstein": (0.1, ">= t"),
        "jensenshannon": (0.1, ">= t"),
        "psi": (0.1, ">= t"),
    }
    assert METHODS["ks"].detected(0.05, 0.05) and not METHODS["chisquare"].detected(0.05, 0.05)
    assert METHODS["wasserstein"].detected(0.1, 0.1)


def test_normed_wasserstein_and_overrides() -> None:
    ref, cur = RNG.normal(10, 2, 3000), RNG.normal(10.3, 2, 2000)
    row = drift_row(num(cur), num(ref))
    normed = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert row["drift_method"] == "wasserstein"
    assert row["drift_score"] == pytest.approx(normed, rel=1e-9)
    assert (row["drift_threshold"], row["drift_detected"]) == (0.1, normed >= 0.1)
    loose = drift_row(num(cur), num(ref), threshold=normed + 0.01)
    assert (loose["drift_threshold"], loose["drift_detected"]) == (normed + 0.01, False)
    ks = drift_row(num(cur), num(ref), method="ks", threshold=0.01)
    assert (ks["drift_method"], ks["drift_score"]) == ("ks", ks["ks_pvalue"])
    js = drift_row(num(cur), num(ref), method="jensenshannon")
    assert js["drift_score"] == js["js_distance"]
    # A constant reference: Evidently divides by at least 0.001.
    flat = drift_row(num(np.full(2000, 1.5)), num(np.full(2000, 1.0)), method="wasserstein")
    assert flat["drift_score"] == pytest.approx(0.5 / 0.001)


def test_evidentlys_psi_method_fills_empty_bins() -> None:
    ref, cur = list("aaabbbcc" * 20), list("aaaabbbd" * 20)
    row = drift_row(cat(cur), cat(ref), method="psi")
    r, c = by_value(ref, cur)
    p, q = r / len(ref), c / len(cur)
    p[p == 0], q[q == 0] = 0.0001, 0.0001  # smallest shares are above 1e-4
    assert row["drift_score"] == pytest.approx(np.sum((p - q) * np.log(p / q)), rel=1e-9)


def test_z_test_for_two_values() -> None:
    ref, cur = ["no"] * 70 + ["yes"] * 30, ["no"] * 50 + ["yes"] * 50
    row = drift_row(cat(cur), cat(ref))
    p1, p2, pooled = 0.3, 0.5, 0.4
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert row["drift_method"] == "z"
    assert row["drift_score"] == pytest.approx(2 * (1 - stats.norm.cdf(abs(z))), rel=1e-12)
    assert row["drift_detected"] is True
    same = drift_row(cat(["x"] * 10), cat(["x"] * 20))
    assert (same["drift_score"], same["drift_detected"]) == (1.0, False)


def test_deltas() -> None:
    row = drift_row(num([1.0, 2.0, None, None]), num([1.0, 1.0, 1.0, 1.0, None]))
    assert row["count_delta"] == -1.0
    assert row["avg_delta"] == pytest.approx(0.5)
    assert row["percent_null_delta"] == pytest.approx(50.0 - 20.0)


def test_an_empty_or_all_null_side_gives_no_decision() -> None:
    empty = drift_row(num([]), num([1.0, 2.0]))
    nulls = drift_row(cat([None, None]), cat(["a", "b"]))
    for row in (empty, nulls):
        assert row["drift_detected"] is None and row["drift_method"] is None
        assert row["js_distance"] is None
    assert empty["count_delta"] == -2.0 and nulls["percent_null_delta"] == 100.0


def test_bad_overrides_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown drift method 'kl'") as info:
        drift_row(num([1.0]), num([1.0]), method="kl")
    assert "ks, chisquare" in str(info.value)
    with pytest.raises(ConfigError, match="'ks' does not apply to a categorical column"):
        drift_row(cat(["a"]), cat(["a"]), method="ks")
    with pytest.raises(ConfigError, match="cannot compare a numeric column with a categorical"):
        drift_row(num([1.0]), cat(["a"]))


def test_top_k_categories_still_compare() -> None:
    ref = summarize(
        pa.array([f"v{i % 300}" for i in range(3000)]), "categorical", max_categories=50
    )
    cur = summarize(
        pa.array([f"v{i % 200}" for i in range(2000)]), "categorical", max_categories=50
    )
    assert ref.other and cur.other
    row = drift_row(cur, ref)
    assert row["drift_method"] == "jensenshannon" and 0 <= row["js_distance"] <= 1


def test_sketched_numbers_compare_asymptotically() -> None:
    ref = summarize(pa.array(RNG.normal(0, 1, 30_000)), "numeric", max_distinct=10_000)
    cur = summarize(pa.array(RNG.normal(0.5, 1, 20_000)), "numeric", max_distinct=10_000)
    row = drift_row(cur, ref)
    assert row["ks_statistic"] == pytest.approx(0.19, abs=0.03)
    assert row["drift_method"] == "wasserstein" and row["drift_detected"] is True


def test_dataset_drift_share_is_evidentlys_rule() -> None:
    rows = [{"drift_detected": d} for d in (True, False, True, False)]
    assert dataset_drift(rows) == {"drift_share": 0.5, "dataset_drift": True}
    assert dataset_drift(rows, share=0.6)["dataset_drift"] is False
    assert dataset_drift([*rows, {"drift_detected": None}])["drift_share"] == 0.5
    assert dataset_drift([]) == {"drift_share": None, "dataset_drift": None}


@pytest.mark.parametrize("integer", [True, False])
def test_sturges_bins_equal_numpys_including_integer_widening(integer: bool) -> None:
    # 22 values over a range of 21 and 2.2M rows: Sturges asks for bins narrower than 1,
    # which NumPy widens to 1 for integer data (pandas keeps integers without nulls).
    values = np.arange(22.0)
    weights = np.full(22, 100_000.0)

    def summary(shift: float) -> ColumnSummary:
        return ColumnSummary(
            kind="numeric",
            data_type="int64" if integer else "double",
            count=2_200_000,
            nulls=0,
            distinct=22,
            valid=2_200_000,
            min=shift,
            max=21.0 + shift,
            values=pa.array(values + shift),
            weights=weights,
        )

    cur, ref = summary(1.0), summary(0.0)
    raw = np.concatenate([np.repeat(values, 100_000), np.repeat(values + 1, 100_000)])
    expected = np.histogram_bin_edges(raw.astype(np.int64) if integer else raw, bins="sturges")
    assert _Pair(cur, ref).sturges_edges() == pytest.approx(expected)
    ref_p, cur_p, by_value = _Pair(cur, ref).evidently_bins()
    assert not by_value
    assert ref_p == pytest.approx(np.histogram(raw[: len(raw) // 2], expected)[0] / 2_200_000)


def test_a_window_under_the_minimum_count_gets_statistics_but_no_verdict() -> None:
    reference = num(RNG.normal(0, 1, 5_000))
    tiny = num(RNG.normal(3, 1, 12))  # shifted far: decided, it would be drift
    decided = drift_row(tiny, reference)
    assert decided["drift_detected"] is True
    held = drift_row(tiny, reference, min_count=30)
    assert held["drift_detected"] is None
    assert held["drift_score"] == decided["drift_score"] and held["ks_statistic"] is not None
    assert dataset_drift([held]) == {"drift_share": None, "dataset_drift": None}
