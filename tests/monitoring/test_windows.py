"""Window boundaries against hand-computed ones: fixed sizes, calendar weeks (Monday),
months and years, in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from lakeforge.errors import LakeforgeError
from lakeforge.monitoring import window_end, window_starts, windows_of
from lakeforge.monitoring._windows import SNAPSHOT_WINDOW, as_timestamps

TS = pa.timestamp("us", tz="UTC")
# Thursday 29 February 2024, 23:47:30.5 UTC (a leap day, a Thursday, near midnight)
T = datetime(2024, 2, 29, 23, 47, 30, 500000, tzinfo=UTC)


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("granularity", "start", "end"),
    [
        ("5 minutes", at(2024, 2, 29, 23, 45), at(2024, 2, 29, 23, 50)),
        ("30 minutes", at(2024, 2, 29, 23, 30), at(2024, 3, 1)),
        ("1 hour", at(2024, 2, 29, 23), at(2024, 3, 1)),
        ("1 day", at(2024, 2, 29), at(2024, 3, 1)),
        ("1 week", at(2024, 2, 26), at(2024, 3, 4)),  # Monday 26 Feb .. Monday 4 March
        ("1 month", at(2024, 2, 1), at(2024, 3, 1)),  # 29 days: a leap February
        ("1 year", at(2024, 1, 1), at(2025, 1, 1)),
    ],
)
def test_window_boundaries(granularity: str, start: datetime, end: datetime) -> None:
    starts = window_starts(pa.chunked_array([pa.array([T], TS)]), granularity)
    assert starts.to_pylist() == [start]
    assert window_end(start, granularity) == end


def test_a_boundary_belongs_to_the_window_it_starts() -> None:
    times = pa.chunked_array(
        [pa.array([at(2024, 1, 7, 23, 59, 59), at(2024, 1, 8), at(2024, 1, 14, 12)], TS)]
    )
    # Sunday 7 Jan is in the week of Monday 1 Jan; Monday 8 Jan starts the next week
    assert windows_of(times, "1 week") == [
        (at(2024, 1, 1), at(2024, 1, 8)),
        (at(2024, 1, 8), at(2024, 1, 15)),
    ]
    assert windows_of(times, "1 month") == [(at(2024, 1, 1), at(2024, 2, 1))]


def test_months_have_their_calendar_lengths() -> None:
    firsts = [at(2023, m, 1) for m in range(1, 13)]
    lengths = [(window_end(s, "1 month") - s).days for s in firsts]
    assert lengths == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    assert window_end(at(2023, 12, 1), "1 month") == at(2024, 1, 1)


def test_windows_are_distinct_sorted_and_skip_nulls() -> None:
    times = pa.chunked_array(
        [pa.array([at(2024, 1, 1, 0, 12), None, at(2024, 1, 1, 0, 1), at(2024, 1, 1, 0, 14)], TS)]
    )
    assert windows_of(times, "5 minutes") == [
        (at(2024, 1, 1, 0, 0), at(2024, 1, 1, 0, 5)),
        (at(2024, 1, 1, 0, 10), at(2024, 1, 1, 0, 15)),
    ]
    assert windows_of(times, "snapshot") == [SNAPSHOT_WINDOW]


def test_naive_times_are_utc_and_zoned_times_are_converted() -> None:
    naive = as_timestamps(pa.array([datetime(2024, 1, 1, 1, 30)]), column="ts")
    assert naive.to_pylist() == [at(2024, 1, 1, 1, 30)]
    paris = timezone(timedelta(hours=1))
    zoned = pa.array([datetime(2024, 1, 1, 0, 30, tzinfo=paris)], pa.timestamp("s", tz="+01:00"))
    # 00:30 in Paris is 23:30 UTC on 31 December: the window is that UTC day's
    assert windows_of(as_timestamps(zoned, column="ts"), "1 day") == [
        (at(2023, 12, 31), at(2024, 1, 1))
    ]
    days = as_timestamps(pa.array([date(2024, 3, 5)]), column="d")
    assert windows_of(days, "1 week") == [(at(2024, 3, 4), at(2024, 3, 11))]


def test_a_column_that_is_not_a_time_is_refused() -> None:
    with pytest.raises(LakeforgeError, match="timestamp column 'ts' is int64"):
        as_timestamps(pa.array([1, 2]), column="ts")
    with pytest.raises(LakeforgeError, match="granularity '2 days' is not allowed"):
        window_end(T, "2 days")
