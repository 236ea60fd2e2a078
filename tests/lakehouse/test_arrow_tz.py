"""pandas frames with time-zone-aware columns become Arrow without a pandas warning."""

from __future__ import annotations

from datetime import timedelta, timezone

import pandas as pd
import pyarrow as pa

from lakeforge.lakehouse import to_arrow


def test_tz_aware_columns_keep_their_zone_and_instants() -> None:
    instants = pd.to_datetime(["2024-03-31 00:30", None, "2024-10-27 01:30"], utc=True)
    frame = pd.DataFrame(
        {
            "paris": instants.tz_convert("Europe/Paris"),
            "plus_one": instants.tz_convert(timezone(timedelta(hours=1))),
            "naive": instants.tz_convert(None),
            "x": [1, 2, 3],
        }
    )
    table = to_arrow(frame)  # the test settings make Pandas4Warning an error
    assert isinstance(table, pa.Table)
    assert table.schema.field("paris").type == pa.timestamp("us", "Europe/Paris")
    assert table.schema.field("plus_one").type == pa.timestamp("us", "+01:00")
    assert table.schema.field("naive").type == pa.timestamp("us")
    utc = pa.timestamp("us", "UTC")
    assert table.column("paris").cast(utc) == table.column("plus_one").cast(utc)
    assert table.column("paris").to_pylist()[1] is None
    assert table.to_pandas().equals(frame)


def test_non_string_column_names_convert_by_position() -> None:
    stamps = pd.Series(pd.to_datetime(["2024-01-01 12:00"], utc=True))
    frame = pd.DataFrame({0: [5], 1: stamps.dt.tz_convert("Asia/Tokyo")})
    table = to_arrow(frame)
    assert isinstance(table, pa.Table)
    assert table.column_names == ["0", "1"]
    assert [f.type for f in table.schema] == [pa.int64(), pa.timestamp("us", "Asia/Tokyo")]
    assert table.column(1).to_pylist()[0].isoformat() == "2024-01-01T21:00:00+09:00"
