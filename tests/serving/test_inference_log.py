"""The inference log's spool: whole lines, torn tails dropped, each segment committed once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from lakeforge._workspace import Workspace
from lakeforge.serving._inference_log import Spool, commit, create_table, segments


def _record(i: int) -> dict[str, object]:
    return {
        "request_id": f"r{i}",
        "client_request_id": None,
        "timestamp_ms": time.time_ns() // 1_000_000,
        "status_code": 200,
        "execution_time_ms": 1.5,
        "sampling_fraction": 1.0,
        "request": "{}",
        "response": '{"predictions": [1]}',
        "endpoint_name": "e",
        "served_entity": "m-champion",
        "model_name": "dev.ml.m",
        "model_version": "1",
        "alias": "champion",
        "shadow": False,
    }


def test_a_segment_committed_before_a_crash_is_never_written_twice(
    ws: Workspace, tmp_path: Path
) -> None:
    create_table(ws, "dev.serving.log")
    spool = Spool(tmp_path / "spool")
    for i in range(5):
        spool.append(_record(i))
    assert spool.rotate()
    (closed,) = spool.closed_segments()
    kept = tmp_path / "copy"
    shutil.copy(closed, kept)
    assert commit(ws, "dev.serving.log", [closed]) == 5
    assert not closed.exists()
    shutil.copy(kept, closed)  # as if the process died between commit and delete
    assert commit(ws, "dev.serving.log", segments(tmp_path / "spool", spool.worker)) == 0
    assert not closed.exists()
    spool.close()
    rows = ws.tables.read("dev.serving.log", format="pandas")
    assert sorted(rows["request_id"]) == [f"r{i}" for i in range(5)]


def test_a_torn_last_line_is_dropped_and_the_rest_kept(ws: Workspace, tmp_path: Path) -> None:
    create_table(ws, "dev.serving.log")
    spool = Spool(tmp_path / "spool")
    spool.append(_record(1))
    spool.append(_record(2))
    spool.rotate()
    (closed,) = spool.closed_segments()
    with closed.open("ab") as handle:
        handle.write(b'{"request_id": "r3", "stat')  # killed mid-write: never acknowledged
    assert commit(ws, "dev.serving.log", [closed]) == 2
    spool.close()
    assert segments(tmp_path / "spool") == []  # the empty open segment is removed on close
