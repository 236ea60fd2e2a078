"""What a refresh reads: only the monitor's columns, only the touched windows' files on an
incremental refresh, and the same metrics whether a window is read at once or column
group by column group, window by window or many windows together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lakeforge import Workspace
from lakeforge.monitoring import _compute, _refresh, create_monitor, output_tables, refresh
from lakeforge.monitoring._stats import summarize
from lakeforge.project import MonitorSpec

TABLE = "dev.s.events"
DAY = datetime(2026, 1, 5, tzinfo=UTC)


def day(index: int, rows: int = 200, *, seed: int | None = None) -> pa.Table:
    rng = np.random.default_rng(seed if seed is not None else index)
    start = DAY + timedelta(days=index)
    return pa.table(
        {
            "ts": pa.array(
                [start + timedelta(seconds=int(s)) for s in rng.integers(0, 86_400, rows)],
                pa.timestamp("us", tz="UTC"),
            ),
            "x": rng.normal(0.0, 1.0, rows),
            "k": rng.integers(0, 6, rows),
            "color": rng.choice(["red", "blue", "green"], rows),
            "version": rng.choice(["1", "2"], rows),
            "pred": rng.integers(0, 2, rows),
            "label": rng.integers(0, 2, rows),
            "payload": [f"{index}-{i}-" + "z" * 50 for i in range(rows)],
        }
    )


def data_files(ws: Workspace, table: str) -> list[Path]:
    return sorted(Path(ws.tables.location(table)).glob("*.parquet"))


def spoil(path: Path, column: str) -> None:
    """Overwrite ``column``'s bytes in a Parquet file: reading it fails, other columns read."""
    meta = pq.ParquetFile(path).metadata
    index = meta.schema.to_arrow_schema().get_field_index(column)
    data = bytearray(path.read_bytes())
    for group in range(meta.num_row_groups):
        chunk = meta.row_group(group).column(index)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(data)


def rounded(value: Any) -> Any:
    """Floats to 12 digits: DuckDB's float sums differ in the last bit from run to run."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return [rounded(v) for v in value] if isinstance(value, list) else value


def monitor(ws: Workspace, name: str = "events", **fields: Any) -> None:
    create_monitor(
        ws,
        MonitorSpec.model_validate(
            {"name": name, "table": "s.events", "profile": "time_series", "timestamp_col": "ts"}
            | fields
        ),
    )


def counts(ws: Workspace, granularity: str = "1 day") -> dict[int, int]:
    rows = ws.tables.read(
        output_tables(ws, "events")[0],
        filter=f"granularity = '{granularity}' AND column_name = ':table' AND slice_key IS NULL",
    ).to_pylist()
    return {r["window_start"].day: r["count"] for r in rows}


def test_a_refresh_reads_only_the_columns_the_monitor_names(ws: Workspace) -> None:
    for i in range(2):
        ws.tables.write(TABLE, day(i))
    monitor(ws, columns=["x", "color"])
    for path in data_files(ws, TABLE):
        spoil(path, "payload")
    with pytest.raises(OSError):  # the spoiled column cannot be read any more
        ws.tables.read(TABLE, columns=["payload"])
    first = refresh(ws, "events")
    ws.tables.write(TABLE, day(2))
    for path in data_files(ws, TABLE):
        spoil(path, "payload")
    second = refresh(ws, "events")
    assert (first.rows_read, second.rows_read, second.full) == (400, 400, False)
    assert counts(ws) == {5: 200, 6: 200, 7: 200}
    profiled = ws.tables.read(output_tables(ws, "events")[0], columns=["column_name"])
    assert set(profiled.column("column_name").to_pylist()) == {":table", "x", "color"}


def test_an_incremental_refresh_reads_only_the_files_of_the_touched_windows(
    ws: Workspace,
) -> None:
    ws.tables.write(TABLE, day(0))
    ws.tables.write(TABLE, day(0, seed=9))
    monitor(ws)
    refresh(ws, "events")
    old = data_files(ws, TABLE)
    new_day = day(1, rows=300)
    ws.tables.write(TABLE, new_day)
    for path in old:  # reading day 0 again would fail
        path.unlink()
    result = refresh(ws, "events")
    # the change feed's time column (300 rows), then day 1's 300 rows
    assert (result.full, result.rows_read) == (False, 600)
    assert [start.day for start, _end in result.windows] == [6]
    assert counts(ws) == {5: 400, 6: 300}
    x = ws.tables.read(
        output_tables(ws, "events")[0],
        filter="column_name = 'x' AND slice_key IS NULL AND window_start = '2026-01-06T00:00:00Z'",
    ).to_pylist()
    expected = summarize(new_day.column("x"), "numeric")
    assert (x[0]["avg"], x[0]["quantiles"]) == (expected.mean, list(expected.quantiles or ()))


@pytest.mark.parametrize(
    "kind", [pa.timestamp("us", tz="UTC"), pa.timestamp("ms"), pa.date32()], ids=str
)
def test_windows_are_read_by_time_range_whatever_the_time_type(
    ws: Workspace, kind: pa.DataType
) -> None:
    def rows(index: int, n: int) -> pa.Table:
        start = DAY + timedelta(days=index)
        times: list[Any] = [start + timedelta(minutes=7 * i) for i in range(n)]
        if pa.types.is_date(kind):
            times = [t.date() for t in times]
        elif kind.tz is None:
            times = [t.replace(tzinfo=None) for t in times]
        return pa.table({"ts": pa.array(times, kind), "x": np.arange(n, dtype=np.float64)})

    ws.tables.write(TABLE, pa.concat_tables([rows(0, 50), rows(1, 40)]))
    monitor(ws, granularities=["1 day", "1 week"])
    assert refresh(ws, "events").rows_read == 90
    ws.tables.write(TABLE, rows(2, 30))
    again = refresh(ws, "events")
    assert (again.full, again.rows_read) == (False, 30 + 120)  # the feed, then the week
    assert (counts(ws), counts(ws, "1 week")) == ({5: 50, 6: 40, 7: 30}, {5: 120})


def test_column_groups_and_window_batches_change_no_metric(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        ws.tables.write(TABLE, day(i, rows=150))
    spec = {
        "profile": "inference",
        "problem_type": "classification",
        "prediction_col": "pred",
        "label_col": "label",
        "model_version_col": "version",
        "slicing_exprs": ["color", "x > 0 AND k < 4"],
        "granularities": ["1 day", "1 week"],
        "custom_metrics": [
            {"name": "x_sum", "type": "aggregate", "definition": "sum(x)"},
            {
                "name": "top",
                "type": "aggregate",
                "definition": "max({{input_column}})",
                "input_columns": ["k"],
            },
        ],
    }
    # at once (the defaults here), one column at a time per window, and one column at a
    # time over every window read together
    settings = {"whole": None, "columns": (1, 1), "batched": (1, 10**9)}
    for name, values in settings.items():
        monitor(ws, name, **spec)
        if values is not None:
            monkeypatch.setattr(_compute, "READ_VALUES", values[0])
            monkeypatch.setattr(_refresh, "BATCH_ROWS", values[1])
        refresh(ws, name)
        monkeypatch.undo()

    def metrics(which: int, name: str) -> list[str]:
        rows = ws.tables.read(output_tables(ws, name)[which], filter=f"monitor_name = '{name}'")
        rows = rows.drop_columns(["monitor_name", "refreshed_at"])
        return sorted(repr({k: rounded(v) for k, v in r.items()}) for r in rows.to_pylist())

    for which in (0, 1):
        whole = metrics(which, "whole")
        assert len(whole) > 100
        assert metrics(which, "columns") == whole
        assert metrics(which, "batched") == whole


def test_a_monitor_on_an_ingested_table(ws: Workspace, tmp_path: Path, flights: pa.Table) -> None:
    """Ingested files carry a dictionary-encoded file column; windows still read by time."""
    landing = tmp_path / "in"
    landing.mkdir()
    days = [flights.filter(pc.equal(flights.column("day"), d)) for d in (1, 2)]
    pacsv.write_csv(days[0], landing / "1.csv")
    ws.ingest(landing, "dev.bronze.flights")
    create_monitor(
        ws,
        MonitorSpec(
            name="flights",
            table="bronze.flights",
            profile="time_series",
            timestamp_col="time_hour",
            granularities=["1 day"],
        ),
    )
    first = refresh(ws, "flights")
    pacsv.write_csv(days[1], landing / "2.csv")
    ws.ingest(landing, "dev.bronze.flights")
    second = refresh(ws, "flights")

    def per_window(rows: pa.Table) -> dict[int, int]:
        starts = pc.day(pc.floor_temporal(rows.column("time_hour"), unit="day"))
        return {v["values"]: v["counts"] for v in pc.value_counts(starts).to_pylist()}

    every = per_window(flights)  # UTC days: January 1st's late flights fall on the 2nd
    touched = per_window(days[1])
    assert first.rows_read == days[0].num_rows
    # the change feed's time column, then every row of the windows day 2's rows fall in
    assert second.rows_read == days[1].num_rows + sum(every[d] for d in touched)
    assert second.full is False
    rows = ws.tables.read(
        output_tables(ws, "flights")[0],
        filter="column_name IN (':table', '_ingest_file') AND slice_key IS NULL",
    ).to_pylist()
    got = {(r["window_start"].day, r["column_name"]): r["count"] for r in rows}
    assert got == {(d, c): n for d, n in every.items() for c in (":table", "_ingest_file")}
