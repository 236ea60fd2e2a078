"""Refreshing a monitor: drift found where it was injected, incremental reads of touched
windows only, crash safety, slices, custom metrics, the stored baseline, bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lakeforge import Workspace
from lakeforge.errors import SchemaMismatchError
from lakeforge.monitoring import create_monitor, output_tables, refresh, set_baseline
from lakeforge.project import MonitorSpec

TABLE = "dev.s.events"
DAY = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
KEYS = ("window_start", "granularity", "model_version", "slice_key", "slice_value", "column_name")


def day(index: int, rows: int = 300, *, shift: float = 0.0, seed: int | None = None) -> pa.Table:
    rng = np.random.default_rng(seed if seed is not None else index)
    start = DAY + timedelta(days=index)
    return pa.table(
        {
            "ts": pa.array(
                [start + timedelta(seconds=int(s)) for s in rng.integers(0, 86_400, rows)],
                pa.timestamp("us", tz="UTC"),
            ),
            "x": rng.normal(shift, 1.0, rows),
            "y": rng.permutation(np.linspace(-2.0, 2.0, rows)),  # the same values every day
            "color": rng.permutation(np.array(["red", "blue", "green"] * rows)[:rows]),
        }
    )


def monitor(ws: Workspace, **fields: Any) -> MonitorSpec:
    spec = MonitorSpec.model_validate(
        {
            "name": "events",
            "table": "s.events",
            "profile": "time_series",
            "timestamp_col": "ts",
            **fields,
        }
    )
    create_monitor(ws, spec)
    return spec


def rows_of(ws: Workspace, which: int, where: str | None = None) -> list[dict[str, Any]]:
    return ws.tables.read(output_tables(ws, "events")[which], filter=where).to_pylist()


def test_an_injected_shift_is_found_in_the_shifted_column_only(ws: Workspace) -> None:
    ws.tables.write("dev.s.train", pa.concat_tables([day(i, seed=100 + i) for i in range(3)]))
    for i in range(3):
        ws.tables.write(TABLE, day(i))
    monitor(ws, baseline_table="s.train")
    refresh(ws, "events")
    ws.tables.write(TABLE, day(3, shift=1.5))
    result = refresh(ws, "events")
    assert [start for start, _end in result.windows] == [DAY + timedelta(days=3)]
    drifts = rows_of(ws, 1, "slice_key IS NULL")
    found = {
        (r["window_start"].day, r["drift_type"], r["column_name"]): r["drift_detected"]
        for r in drifts
        if r["column_name"] != ":table"
    }
    for kind in ("BASELINE", "CONSECUTIVE"):
        assert found[(8, kind, "x")] is True
        assert found[(8, kind, "y")] is False and found[(8, kind, "color")] is False
    assert not any(v for (d, _k, _c), v in found.items() if d < 8)
    table_row = next(
        r for r in drifts
        if r["column_name"] == ":table" and r["window_start"].day == 8 and r["drift_type"] == "BASELINE"
    )  # fmt: skip
    assert table_row["drift_share"] == pytest.approx(1 / 3)
    assert table_row["dataset_drift"] is False


def test_incremental_refresh_reads_new_versions_and_recomputes_touched_windows(
    ws: Workspace,
) -> None:
    for i in range(3):
        ws.tables.write(TABLE, day(i, rows=50))
    monitor(ws, granularities=["1 day", "1 week"])
    first = refresh(ws, "events")
    assert first.full and first.rows_read == 150 and first.versions == (None, 2)
    extra = day(1, rows=10, seed=7)
    ws.tables.write(TABLE, extra)
    second = refresh(ws, "events")
    # 10 rows from the change feed, then the 60 rows of day 1 and the 160 of its week
    assert (second.full, second.versions, second.rows_read) == (False, (2, 3), 10 + 160)
    assert second.by_granularity == {
        "1 day": [(DAY + timedelta(days=1), DAY + timedelta(days=2))],
        "1 week": [(DAY, DAY + timedelta(days=7))],
    }
    profile = rows_of(ws, 0, "column_name = ':table' AND slice_key IS NULL")
    counts = {(r["granularity"], r["window_start"].day): r["count"] for r in profile}
    assert counts == {("1 day", 5): 50, ("1 day", 6): 60, ("1 day", 7): 50, ("1 week", 5): 160}
    # day 2's CONSECUTIVE row compares with the recomputed day 1: rewritten, not re-read
    consecutive = [
        r for r in rows_of(ws, 1, "drift_type = 'CONSECUTIVE' AND column_name = 'x'")
        if r["granularity"] == "1 day"
    ]  # fmt: skip
    assert sorted(r["window_start"].day for r in consecutive) == [6, 7]
    again = refresh(ws, "events")
    assert (again.windows, again.rows_read, again.profile_rows) == ([], 0, 0)
    assert Counter(tuple(r[k] for k in KEYS) for r in rows_of(ws, 0)).most_common(1)[0][1] == 1


def test_a_refresh_killed_between_two_table_commits_writes_no_row_twice(
    ws: Workspace, project_dir: Path
) -> None:
    for i in range(2):
        ws.tables.write(TABLE, day(i, rows=40))
    monitor(ws)
    refresh(ws, "events")
    ws.tables.write(TABLE, day(2, rows=40))
    script = textwrap.dedent(
        f"""
        import os, signal
        import lakeforge
        from lakeforge.monitoring import _refresh

        write = _refresh.replace_rows
        def crash_after_profile(ws, table, *args, **kwargs):
            version = write(ws, table, *args, **kwargs)
            if table.table.endswith("_profile_metrics"):
                os.kill(os.getpid(), signal.SIGKILL)
            return version
        _refresh.replace_rows = crash_after_profile
        with lakeforge.connect("dev", project_dir={str(project_dir)!r}) as ws:
            _refresh.refresh(ws, "events")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    profile_table, drift_table = output_tables(ws, "events")
    before = ws.tables.delta(drift_table).version()
    assert len({r["window_start"] for r in rows_of(ws, 0)}) == 3  # profile has day 2
    assert len({r["window_start"] for r in rows_of(ws, 1)}) == 1  # drift does not yet
    result = refresh(ws, "events")
    assert [s.day for s, _e in result.windows] == [7]
    assert ws.tables.delta(drift_table).version() == before + 1
    for which in (0, 1):
        keys = Counter(
            (*(r[k] for k in KEYS), r.get("drift_type"), r.get("log_type"))
            for r in rows_of(ws, which)
        )
        assert max(keys.values()) == 1
    assert len({r["window_start"] for r in rows_of(ws, 1)}) == 2
    profile_rows = len(rows_of(ws, 0))
    refresh(ws, "events", full=True)
    assert len(rows_of(ws, 0)) == profile_rows


def test_slices_by_column_value_and_by_expression(ws: Workspace) -> None:
    data = pa.table(
        {
            "ts": pa.array(
                [DAY + timedelta(hours=h) for h in range(6)], pa.timestamp("us", tz="UTC")
            ),
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "color": ["red", "red", "blue", "red", "blue", "green"],
        }
    )
    ws.tables.write(TABLE, data)
    monitor(ws, slicing_exprs=["color", "x > 2.5"], max_slices=2)
    refresh(ws, "events")
    rows = rows_of(ws, 0, "column_name = 'x'")
    got = {(r["slice_key"], r["slice_value"]): (r["count"], r["avg"]) for r in rows}
    assert got == {
        (None, None): (6, 3.5),
        ("color", "red"): (3, 7 / 3),  # 1, 2, 4
        ("color", "blue"): (2, 4.0),  # 3, 5; green is beyond max_slices=2
        ("x > 2.5", "true"): (4, 4.5),
        ("x > 2.5", "false"): (2, 1.5),
    }


def test_custom_metrics_aggregate_derived_and_drift(ws: Workspace) -> None:
    for i, values in enumerate(([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])):
        ws.tables.write(
            TABLE,
            pa.table(
                {
                    "ts": pa.array([DAY + timedelta(days=i)] * 3, pa.timestamp("us", tz="UTC")),
                    "x": values,
                }
            ),
        )
    monitor(
        ws,
        custom_metrics=[
            {"name": "x_sum", "type": "aggregate", "definition": "sum(x)"},
            {
                "name": "x_top",
                "type": "aggregate",
                "definition": "max({{input_column}})",
                "input_columns": ["x"],
            },
            {"name": "x_sum_k", "type": "derived", "definition": "x_sum / 1000"},
            {
                "name": "x_sum_ratio",
                "type": "drift",
                "definition": "{{current_df}}.x_sum / {{base_df}}.x_sum",
            },
        ],
    )
    refresh(ws, "events")
    profile = {(r["window_start"].day, r["column_name"]): r for r in rows_of(ws, 0)}
    assert (profile[(5, ":table")]["x_sum"], profile[(5, ":table")]["x_sum_k"]) == (6.0, 0.006)
    assert (profile[(6, "x")]["x_top"], profile[(6, "x")]["x_sum"]) == (30.0, None)
    drift = [r for r in rows_of(ws, 1) if r["column_name"] == ":table"]
    assert [(r["window_start"].day, r["x_sum_ratio"]) for r in drift] == [(6, 10.0)]


def test_the_baseline_is_computed_once_and_never_read_again(ws: Workspace) -> None:
    ws.tables.write("dev.s.train", day(0, seed=50))
    ws.tables.write(TABLE, day(0))
    monitor(ws, baseline_table="s.train")
    refresh(ws, "events")
    ws.tables.drop("dev.s.train")  # refresh must not need it any more
    ws.tables.write(TABLE, day(1, shift=3.0))
    refresh(ws, "events")
    baseline = rows_of(ws, 1, "drift_type = 'BASELINE' AND slice_key IS NULL AND column_name = 'x'")
    assert sorted((r["window_start"].day, r["drift_detected"]) for r in baseline) == [
        (5, False),
        (6, True),
    ]
    profiled = rows_of(ws, 0, "log_type = 'BASELINE' AND column_name = ':table'")
    assert [r["count"] for r in profiled] == [300]
    # a new baseline replaces the stored one and every window's BASELINE rows
    ws.tables.write("dev.s.train", day(1, shift=3.0, seed=51))
    set_baseline(ws, "events")
    baseline = rows_of(ws, 1, "drift_type = 'BASELINE' AND slice_key IS NULL AND column_name = 'x'")
    assert sorted((r["window_start"].day, r["drift_detected"]) for r in baseline) == [
        (5, True),
        (6, False),
    ]


def test_snapshot_monitor_and_an_emptied_window(ws: Workspace) -> None:
    ws.tables.write(TABLE, pa.concat_tables([day(0, rows=20), day(1, rows=20)]))
    monitor(ws, granularities=["1 day"])
    refresh(ws, "events")
    ws.tables.delete(TABLE, "ts >= '2026-01-06T00:00:00Z'")
    result = refresh(ws, "events")
    assert [s.day for s, _e in result.windows] == [6]
    counts = {
        r["window_start"].day: r["count"]
        for r in rows_of(ws, 0, "column_name = ':table' AND slice_key IS NULL")
    }
    assert counts == {5: 20, 6: 0}  # the emptied window is recorded as count 0
    create_monitor(ws, MonitorSpec(name="snap", table="s.events", columns=["x"]))
    snap = refresh(ws, "snap")
    assert snap.by_granularity["snapshot"][0][0].year == 1970
    rows = ws.tables.read(output_tables(ws, "snap")[0], filter="monitor_name = 'snap'").to_pylist()
    assert sorted((r["column_name"], r["count"]) for r in rows) == [(":table", 20), ("x", 20)]


def test_a_monitor_on_a_missing_column_is_refused(ws: Workspace) -> None:
    ws.tables.write(TABLE, day(0, rows=5))
    monitor(ws, columns=["x", "nope"])
    with pytest.raises(
        SchemaMismatchError,
        match=r"columns names column\(s\) nope that dev\.s\.events does not have",
    ):
        refresh(ws, "events")
