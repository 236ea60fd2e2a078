"""Publishing feature tables to the online store: snapshot, incremental from the change
data feed, deletes, late rows, concurrent writers, and the Redis store."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.features import online_store

T0 = datetime(2013, 1, 1, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        ("origin", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("temp", pa.float64()),
        ("wind", pa.float64()),
    ]
)


def rows(*values: tuple[str, int, float, float]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"origin": o, "ts": T0 + timedelta(hours=h), "temp": t, "wind": w}
            for o, h, t, w in values
        ],
        schema=SCHEMA,
    )


def online(ws: Workspace, origins: list[str]) -> dict[str, float | None]:
    with online_store(ws) as store:
        found = store.read("dev.fs.weather", pa.table({"origin": origins}), keys=["origin"])
    return dict(
        zip(found.column("origin").to_pylist(), found.column("temp").to_pylist(), strict=True)
    )


@pytest.fixture
def fs_ws(ws: Workspace) -> Workspace:
    ws.features.create(
        "dev.fs.weather",
        SCHEMA,
        primary_keys=["origin"],
        timestamp_key="ts",
        feature_descriptions={"temp": "air temperature, F"},
    )
    ws.features.write(
        "dev.fs.weather",
        rows(("EWR", 0, 39.0, 10.0), ("JFK", 0, 40.0, 12.0), ("EWR", 1, 38.5, 9.0)),
    )
    return ws


def test_snapshot_then_incremental_keeps_the_latest_row_per_key(fs_ws: Workspace) -> None:
    first = fs_ws.publish_table("dev.fs.weather")
    assert first.mode == "snapshot" and first.rows_written == 3
    assert online(fs_ws, ["EWR", "JFK", "LGA"]) == {"EWR": 38.5, "JFK": 40.0, "LGA": None}
    assert fs_ws.publish_table("dev.fs.weather").mode == "unchanged"
    fs_ws.features.write("dev.fs.weather", rows(("JFK", 2, 41.0, 11.0), ("LGA", 2, 37.0, 8.0)))
    second = fs_ws.publish_table("dev.fs.weather")
    assert second.mode == "incremental" and second.rows_written == 2
    assert second.from_version == first.to_version
    # a late-arriving older row lands in Delta but never replaces the newer online row
    fs_ws.features.write("dev.fs.weather", rows(("JFK", 1, -99.0, 0.0)))
    assert fs_ws.publish_table("dev.fs.weather").mode == "incremental"
    assert online(fs_ws, ["EWR", "JFK", "LGA"]) == {"EWR": 38.5, "JFK": 41.0, "LGA": 37.0}


def test_deleting_the_newest_row_falls_back_to_the_previous_one(fs_ws: Workspace) -> None:
    fs_ws.publish_table("dev.fs.weather")
    fs_ws.tables.delete("dev.fs.weather", "origin = 'EWR' AND temp = 38.5")
    fs_ws.tables.delete("dev.fs.weather", "origin = 'JFK'")
    result = fs_ws.publish_table("dev.fs.weather")
    assert result.mode == "incremental" and result.keys_deleted == 2
    assert online(fs_ws, ["EWR", "JFK"]) == {"EWR": 39.0, "JFK": None}


def test_ttl_is_enforced_on_read(fs_ws: Workspace) -> None:
    fs_ws.publish_table("dev.fs.weather")
    with online_store(fs_ws) as store:
        keys = pa.table({"origin": ["EWR", "JFK"]})
        fresh = store.read(
            "dev.fs.weather",
            keys,
            keys=["origin"],
            ttl=timedelta(hours=2),
            now=T0 + timedelta(hours=2, seconds=1),
        )
        assert fresh.column("temp").to_pylist() == [38.5, None]  # JFK's row is over 2 h old


def test_publishing_while_writers_are_active_loses_no_update(fs_ws: Workspace) -> None:
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        with lakeforge.connect("dev", project_dir=fs_ws.project.directory) as other:
            hour = 10
            while not stop.is_set() and hour < 40:
                other.features.write("dev.fs.weather", rows(("EWR", hour, float(hour), 1.0)))
                written.append(hour)
                hour += 1

    thread = threading.Thread(target=writer)
    thread.start()
    for _ in range(5):
        fs_ws.publish_table("dev.fs.weather")
    stop.set()
    thread.join(timeout=120)
    fs_ws.publish_table("dev.fs.weather")  # catches up with whatever landed meanwhile
    assert written and online(fs_ws, ["EWR"]) == {"EWR": float(written[-1])}


def test_snapshot_mode_replaces_the_online_table(fs_ws: Workspace) -> None:
    fs_ws.publish_table("dev.fs.weather")
    fs_ws.tables.delete("dev.fs.weather", "origin = 'JFK'")
    assert fs_ws.publish_table("dev.fs.weather", mode="snapshot").mode == "snapshot"
    assert online(fs_ws, ["JFK"]) == {"JFK": None}


@pytest.mark.redis
def test_publish_to_redis(tmp_path: Path) -> None:
    name = f"r{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "lakeforge.yaml").write_text(
        f"name: {name}\ntargets:\n  dev:\n    online_store: redis://127.0.0.1:6379/0\n"
    )
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.features.create("dev.fs.weather", SCHEMA, primary_keys=["origin"], timestamp_key="ts")
        ws.features.write("dev.fs.weather", rows(("EWR", 0, 39.0, 10.0), ("EWR", 3, 35.0, 7.0)))
        try:
            assert ws.publish_table("dev.fs.weather").rows_written == 2
            assert online(ws, ["EWR", "JFK"]) == {"EWR": 35.0, "JFK": None}
        finally:
            with online_store(ws) as store:
                store.drop("dev.fs.weather")


def test_features_cli(fs_ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    from lakeforge.cli import main

    def run(*args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(fs_ws.project.directory), *args])
        out = capsys.readouterr()
        assert exit_info.value.code == code, out.out + out.err
        return out.out + out.err

    assert "dev.fs.weather" in run("features", "list")
    described = run("features", "describe", "dev.fs.weather")
    assert "lookup keys: origin" in described and "timestamp key: ts" in described
    assert "sequence column: none" in described
    assert "air temperature, F" in described
    assert "snapshot up to version 1, 3 row(s) written" in run(
        "features", "publish", "dev.fs.weather"
    )
    assert "is not a feature table" in run("features", "describe", "dev.system.quality_log", code=1)


def test_sequence_column_decides_the_online_row(ws: Workspace) -> None:
    """Online rows agree with a hand-computed latest row per key by (ts, seq) and with
    the training set's latest-row lookup, through snapshots, incremental publishes,
    plain appends that repeat (key, ts) and feature writes with older sequences."""
    from lakeforge.features import FeatureLookup

    schema = SCHEMA.append(pa.field("seq", pa.int64()))

    def seq_rows(*values: tuple[str, int, float, int | None]) -> pa.Table:
        return pa.Table.from_pylist(
            [
                {"origin": o, "ts": T0 + timedelta(hours=h), "temp": t, "wind": 0.0, "seq": s}
                for o, h, t, s in values
            ],
            schema=schema,
        )

    name = "dev.fs.weather"
    ws.features.create(
        name,
        seq_rows(("EWR", 1, 30.0, 2), ("EWR", 1, 10.0, 5), ("JFK", 0, 40.0, 1)),
        primary_keys="origin",
        timestamp_key="ts",
        sequence_by="seq",
    )
    ws.tables.write(name, seq_rows(("EWR", 1, 99.0, 4), ("EWR", 0, 50.0, 9)))  # older at h1

    def offline() -> dict[str, float | None]:
        keys = pa.table({"origin": ["EWR", "JFK", "LGA"]})
        built = ws.create_training_set(keys, [FeatureLookup(name, "origin")], label=None)
        table = built.load_df()
        return dict(zip(table["origin"].to_pylist(), table["temp"].to_pylist(), strict=True))

    expected = {"EWR": 10.0, "JFK": 40.0, "LGA": None}
    assert ws.publish_table(name).mode == "snapshot"
    assert online(ws, ["EWR", "JFK", "LGA"]) == offline() == expected
    # An appended row repeating (EWR, h1) with an older seq must not win online either.
    ws.tables.write(name, seq_rows(("EWR", 1, 77.0, 3)))
    ws.features.write(name, seq_rows(("JFK", 0, 41.0, 0), ("LGA", 2, 37.0, 1)))  # JFK: older
    assert ws.publish_table(name).mode == "incremental"
    expected = {"EWR": 10.0, "JFK": 40.0, "LGA": 37.0}
    assert online(ws, ["EWR", "JFK", "LGA"]) == offline() == expected
    ws.features.write(name, seq_rows(("EWR", 1, 11.0, 6), ("JFK", 0, 42.0, 2)))  # newer: win
    assert ws.publish_table(name).mode == "incremental"
    expected = {"EWR": 11.0, "JFK": 42.0, "LGA": 37.0}
    assert online(ws, ["EWR", "JFK", "LGA"]) == offline() == expected


def test_publish_reports_progress_per_batch(
    fs_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console

    from lakeforge.cli import _features, main

    monkeypatch.setattr("lakeforge.features._publish._BATCH_ROWS", 1)
    seen: list[int] = []
    fs_ws.publish_table("dev.fs.weather", progress=seen.append)
    assert seen == [1, 2, 3]

    def publish_on_a_terminal(*extra: str) -> str:
        screen = io.StringIO()
        terminal = Console(file=screen, force_terminal=True, width=150, color_system=None)
        monkeypatch.setattr(_features, "console", terminal)
        project = str(fs_ws.project.directory)
        args = ["features", "publish", "dev.fs.weather", "--mode", "snapshot", *extra]
        with pytest.raises(SystemExit):
            main(["--project-dir", project, *args])
        return screen.getvalue()

    assert "publishing dev.fs.weather: 3 row(s) written" in publish_on_a_terminal()
    quiet = publish_on_a_terminal("--quiet")
    assert "publishing" not in quiet and "3 row(s) written" in quiet
