"""Column summaries: profile numbers against pandas and DuckDB, sketches, bad input."""

from __future__ import annotations

import pickle

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from lakeforge.errors import LakeforgeError
from lakeforge.monitoring._drift import ks_2samp
from lakeforge.monitoring._stats import (
    QUANTILE_LEVELS,
    ColumnSummary,
    infer_kind,
    profile_row,
    summarize,
)

PROFILE_COLUMNS = {
    "count",
    "num_nulls",
    "percent_null",
    "num_zeros",
    "percent_zeros",
    "distinct_count",
    "percent_distinct",
    "min",
    "max",
    "avg",
    "stddev",
    "median",
    "quantiles",
    "frequent_items",
    "avg_length",
}


@pytest.fixture(scope="module")
def numbers() -> pa.ChunkedArray:
    """5,000 rounded normals (ties), zeros, nulls and NaNs, in two chunks."""
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(2.0, 3.0, 5000), 1)
    values[rng.random(5000) < 0.02] = np.nan
    mask = rng.random(5000) < 0.05
    array = pa.array(values, mask=mask)
    return pa.chunked_array([array.slice(0, 2000), array.slice(2000)])


def test_numeric_profile_equals_pandas_and_duckdb(numbers: pa.ChunkedArray) -> None:
    summary = summarize(numbers, "numeric")
    series = numbers.to_pandas()  # NaN and null both become NaN, as in our null count
    row = profile_row(summary)
    assert set(row) == PROFILE_COLUMNS
    assert row["count"] == len(series)
    assert row["num_nulls"] == int(series.isna().sum())
    assert row["num_zeros"] == int((series == 0).sum())
    assert row["distinct_count"] == series.nunique()
    assert row["min"] == series.min() and row["max"] == series.max()
    assert row["avg"] == pytest.approx(series.mean(), rel=1e-12)
    assert row["stddev"] == pytest.approx(series.std(), rel=1e-12)  # ddof=1
    assert row["median"] == pytest.approx(series.median(), rel=1e-12)
    assert row["quantiles"] == pytest.approx(list(series.quantile(QUANTILE_LEVELS)), rel=1e-12)
    assert row["percent_null"] == pytest.approx(100 * series.isna().mean())
    assert row["percent_zeros"] == pytest.approx(100 * (series == 0).mean())
    assert row["frequent_items"] is None and row["avg_length"] is None

    frame = pa.table({"x": numbers})  # noqa: F841 (read by DuckDB)
    sql = (
        "SELECT count(DISTINCT x), stddev_samp(x), quantile_cont(x, [0.01, 0.25, 0.99]) "
        "FROM frame WHERE NOT isnan(x)"
    )
    distinct, stddev, quantiles = duckdb.sql(sql).fetchall()[0]
    assert (summary.distinct, summary.stddev) == (distinct, pytest.approx(stddev, rel=1e-9))
    assert summary.quantiles is not None
    picked = [summary.quantiles[QUANTILE_LEVELS.index(q)] for q in (0.01, 0.25, 0.99)]
    assert picked == pytest.approx(quantiles, rel=1e-12)


def test_numeric_keeps_exact_distinct_values_and_counts(numbers: pa.ChunkedArray) -> None:
    summary = summarize(numbers, "numeric")
    counts = numbers.to_pandas().value_counts().sort_index()
    assert summary.exact
    assert summary.values.to_pylist() == list(counts.index)
    assert summary.weights.tolist() == list(counts.to_numpy(dtype=float))
    assert summary.valid == counts.sum()


def test_categorical_profile_equals_pandas() -> None:
    rng = np.random.default_rng(4)
    words = rng.choice(["apple", "kiwi", "fig", "banana", "", "cherry"] + list("abcdefgh"), 3000)
    array = pa.array(words, mask=rng.random(3000) < 0.1)
    summary = summarize(array, "categorical")
    series = array.to_pandas()
    row = profile_row(summary)
    assert row["count"] == 3000 and row["num_nulls"] == int(series.isna().sum())
    assert row["distinct_count"] == series.nunique()
    assert row["avg_length"] == pytest.approx(series.dropna().str.len().mean(), rel=1e-12)
    counts = series.value_counts()
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert row["frequent_items"] == [{"item": k, "count": n} for k, n in expected]
    assert row["min"] is None and row["num_zeros"] is None and row["quantiles"] is None
    assert summary.exact and summary.other == 0
    assert dict(zip(summary.values.to_pylist(), summary.weights, strict=True)) == dict(counts)


def test_hundred_thousand_categories_keep_top_k_and_other_in_bounded_memory() -> None:
    rng = np.random.default_rng(5)
    n = 400_000
    # A skewed column: a few heavy values, then 100k distinct ones.
    values = np.where(rng.random(n) < 0.2, "heavy" + (rng.integers(0, 5, n)).astype(str), "")
    tail = np.char.add("id", rng.permutation(np.arange(n) % 100_000).astype(str))
    array = pa.array(np.where(values == "", tail, values))
    summary = summarize(array, "categorical")
    assert summary.distinct == array.to_pandas().nunique() > 99_000
    assert not summary.exact
    assert len(summary.values) == 10_000
    assert summary.other == n - int(summary.weights.sum())
    # It holds only its own 10,000 values, not the buffers of all 100k.
    assert summary.values.get_total_buffer_size() < 200_000
    assert {item for item, _ in summary.frequent_items[:5]} == {f"heavy{i}" for i in range(5)}
    # What is kept does not grow with the column: ten times the distinct values, same size.
    wider = pa.array(np.char.add("w", np.arange(1_000_000).astype(str)))
    assert len(summarize(wider, "categorical").to_bytes()) < 2 * len(summary.to_bytes())
    assert len(summary.to_bytes()) < 400_000
    small = summarize(array, "categorical", max_categories=100)
    assert len(small.values) == 100 and small.other + small.weights.sum() == n


def test_numeric_beyond_the_cap_becomes_a_sketch_within_its_error_bound() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.normal(0, 1, 60_000), rng.normal(0.05, 1.2, 50_000)
    exact_a = summarize(pa.array(a), "numeric")
    sketch_a = summarize(pa.array(a), "numeric", max_distinct=10_000, sketch_points=2_000)
    exact_b = summarize(pa.array(b), "numeric")
    assert exact_a.exact and not sketch_a.exact and len(sketch_a.values) == 2_000
    # The profile numbers do not come from the sketch: they are the same.
    assert profile_row(sketch_a) == profile_row(exact_a)
    d_exact = ks_2samp(exact_a, exact_b)[0]
    d_sketch = ks_2samp(sketch_a, exact_b)[0]
    assert d_exact == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert abs(d_sketch - d_exact) <= 1 / (2 * 2_000)
    w_exact = stats.wasserstein_distance(a, b)
    w_sketch = stats.wasserstein_distance(sketch_a.values.to_numpy(), b, sketch_a.weights)
    assert abs(w_sketch - w_exact) <= (a.max() - a.min()) / (2 * 2_000)


def test_all_null_and_empty_columns_are_profiled() -> None:
    for kind, data_type in (("numeric", pa.float64()), ("categorical", pa.string())):
        nulls = profile_row(summarize(pa.array([None] * 7, data_type), kind))  # type: ignore[arg-type]
        assert (nulls["count"], nulls["num_nulls"], nulls["percent_null"]) == (7, 7, 100.0)
        assert nulls["distinct_count"] == 0 and nulls["avg"] is None and nulls["min"] is None
        empty = profile_row(summarize(pa.chunked_array([], data_type), kind))  # type: ignore[arg-type]
        assert empty["count"] == 0 and empty["percent_null"] is None and empty["quantiles"] is None
    one = profile_row(summarize(pa.array([3]), "numeric"))
    assert (one["avg"], one["median"], one["stddev"]) == (3.0, 3.0, None)


def test_nan_is_null_and_infinity_stays_out_of_the_distribution() -> None:
    summary = summarize(pa.array([1.0, float("nan"), float("inf"), None, 3.0]), "numeric")
    assert (summary.count, summary.nulls, summary.valid) == (5, 2, 2)
    assert (summary.min, summary.max, summary.mean) == (1.0, 3.0, 2.0)


def test_summary_round_trips_through_arrow_ipc(numbers: pa.ChunkedArray) -> None:
    rng = np.random.default_rng(7)
    summaries = [
        summarize(numbers, "numeric"),
        summarize(pa.array(rng.normal(size=30_000)), "numeric", max_distinct=10_000),
        summarize(
            pa.array(rng.integers(0, 500, 5000).astype(str)), "categorical", max_categories=50
        ),
        summarize(pa.array([None, None], pa.string()), "categorical"),
    ]
    for summary in summaries:
        data = summary.to_bytes()
        assert data[:4] == b"\xff\xff\xff\xff"  # an Arrow IPC stream, not a pickle
        back = ColumnSummary.from_bytes(data)
        assert profile_row(back) == profile_row(summary)
        assert (back.kind, back.exact, back.other, back.valid) == (
            summary.kind,
            summary.exact,
            summary.other,
            summary.valid,
        )
        assert back.values.equals(summary.values)
        assert back.weights.tolist() == summary.weights.tolist()
        assert profile_row(pickle.loads(pickle.dumps(summary))) == profile_row(summary)
    with pytest.raises(LakeforgeError, match="not a serialised column summary"):
        ColumnSummary.from_bytes(b"garbage")


def test_kind_is_inferred_from_the_arrow_type() -> None:
    assert infer_kind(pa.int8()) == infer_kind(pa.float32()) == "numeric"
    assert infer_kind(pa.decimal128(10, 2)) == "numeric"
    assert infer_kind(pa.string()) == infer_kind(pa.large_string()) == "categorical"
    assert (
        infer_kind(pa.bool_())
        == infer_kind(pa.dictionary(pa.int32(), pa.string()))
        == ("categorical")
    )
    assert infer_kind(pa.timestamp("us")) is None and infer_kind(pa.list_(pa.int64())) is None


def test_other_arrow_types_are_summarised() -> None:
    flags = summarize(pa.array([True, False, True, None]), "categorical")
    assert flags.frequent_items == (("true", 2), ("false", 1)) and flags.avg_length is None
    words = pa.array(["x", "y", "x"]).dictionary_encode()
    assert summarize(words, "categorical").frequent_items == (("x", 2), ("y", 1))
    assert summarize(words, "categorical").avg_length == 1.0
    big = summarize(pa.array([2**62, 1], pa.uint64()), "numeric")
    assert big.max == float(2**62) and big.data_type == "uint64"
    money = summarize(pa.array([1, 2], pa.decimal128(5, 2)), "numeric")
    assert money.mean == 1.5


def test_wrong_kind_or_type_is_refused() -> None:
    with pytest.raises(LakeforgeError, match="cannot be profiled as numeric"):
        summarize(pa.array(["a"]), "numeric")
    with pytest.raises(LakeforgeError, match="unknown column kind 'text'"):
        summarize(pa.array(["a"]), "text")  # type: ignore[arg-type]
    with pytest.raises(LakeforgeError, match="cannot be profiled as categorical"):
        summarize(pa.array([[1]]), "categorical")


def test_profile_percentages_use_all_rows() -> None:
    row = profile_row(summarize(pa.array([0, 0, 1, None]), "numeric"))
    assert (row["percent_null"], row["percent_zeros"], row["percent_distinct"]) == (
        25.0,
        50.0,
        50.0,
    )
    assert row["stddev"] == pytest.approx(pd.Series([0, 0, 1]).std())
