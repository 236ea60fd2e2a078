"""Time windows of a monitor: fixed-size ones from 5 minutes to 1 hour, calendar days,
weeks (starting Monday, as Databricks), months and years, all in UTC; and the one
window a snapshot monitor has over the whole table."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError

#: granularity -> (multiple, unit) for Arrow's temporal rounding.
_UNITS: dict[str, tuple[int, str]] = {
    "5 minutes": (5, "minute"),
    "30 minutes": (30, "minute"),
    "1 hour": (1, "hour"),
    "1 day": (1, "day"),
    "1 week": (1, "week"),
    "1 month": (1, "month"),
    "1 year": (1, "year"),
}
SNAPSHOT = "snapshot"
#: The window of a snapshot monitor: it covers every row, whatever its time.
SNAPSHOT_WINDOW = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))
TIMESTAMP = pa.timestamp("us", tz="UTC")

Window = tuple[datetime, datetime]


def as_timestamps(values: pa.Array | pa.ChunkedArray, *, column: str) -> pa.ChunkedArray:
    """A timestamp or date column as ``timestamp[us, UTC]`` (naive times are taken as UTC)."""
    chunked = values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])
    kind = chunked.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            chunked = pc.assume_timezone(chunked.cast(pa.timestamp("us")), "UTC")
        return chunked.cast(TIMESTAMP)
    if pa.types.is_date(kind):
        return chunked.cast(pa.timestamp("us")).cast(TIMESTAMP)
    raise LakeforgeError(
        f"timestamp column {column!r} is {kind}; a monitor's windows need a timestamp or date "
        "column (convert epoch numbers or strings in a view first)"
    )


def _unit(granularity: str) -> tuple[int, str]:
    if granularity not in _UNITS:
        raise LakeforgeError(
            f"granularity {granularity!r} is not allowed (allowed: {', '.join(_UNITS)})"
        )
    return _UNITS[granularity]


def window_starts(timestamps: pa.ChunkedArray, granularity: str) -> pa.ChunkedArray:
    """The start of the window each timestamp falls in (null stays null)."""
    multiple, unit = _unit(granularity)
    return pc.floor_temporal(timestamps, multiple=multiple, unit=unit, week_starts_monday=True)


def start_counts(timestamps: pa.ChunkedArray, granularity: str) -> dict[datetime, int]:
    """How many of the (non-null) timestamps fall in each window, by window start."""
    counts = pc.value_counts(window_starts(timestamps, granularity).drop_null())
    starts: list[datetime] = counts.field("values").to_pylist()
    return dict(zip(starts, counts.field("counts").to_pylist(), strict=True))


def window_end(start: datetime, granularity: str) -> datetime:
    """The exclusive end of the window that starts at ``start``."""
    if granularity == SNAPSHOT:
        return SNAPSHOT_WINDOW[1]
    multiple, unit = _unit(granularity)
    ends = pc.ceil_temporal(
        pa.array([start], TIMESTAMP),
        multiple=multiple,
        unit=unit,
        week_starts_monday=True,
        ceil_is_strictly_greater=True,
    )
    end: datetime = ends[0].as_py()
    return end


def merged(windows: list[Window]) -> list[Window]:
    """Windows as few time ranges: overlapping or adjacent ones joined, oldest first."""
    found: list[Window] = []
    for start, end in sorted(windows):
        if found and start <= found[-1][1]:
            found[-1] = (found[-1][0], max(end, found[-1][1]))
        else:
            found.append((start, end))
    return found


def windows_of(timestamps: pa.ChunkedArray, granularity: str) -> list[Window]:
    """The distinct windows the (non-null) timestamps fall in, oldest first."""
    if granularity == SNAPSHOT:
        return [SNAPSHOT_WINDOW]
    starts = pc.unique(window_starts(timestamps, granularity).drop_null())
    ordered = pc.sort_indices(starts)
    return [(s, window_end(s, granularity)) for s in starts.take(ordered).to_pylist()]
