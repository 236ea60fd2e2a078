"""Serving under load: traffic split and shadow, hot swap, crash recovery of the inference log."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import lakeforge
from lakeforge.serving._inference_log import segments, spool_dir
from tests.serving.conftest import FEATURES, frame

pytestmark = pytest.mark.slow


def _payload(all_flights: pa.Table, n: int = 2) -> dict[str, Any]:
    data = frame(all_flights).head(n)[FEATURES]
    return {"dataframe_split": json.loads(data.to_json(orient="split", index=False))}


def _table(project: Path, name: str) -> Any:
    with lakeforge.connect("dev", project_dir=project) as ws:
        return ws.tables.read(name, format="pandas")


def test_traffic_split_shadow_and_inference_table(
    start_server: Any, served_project: Path, all_flights: pa.Table
) -> None:
    server = start_server("-e", "split")
    payload = _payload(all_flights)
    answers = set()
    for i in range(120):
        status, answer = server.post(
            "/serving-endpoints/split/invocations", payload, {"X-Client-Request-Id": f"c{i}"}
        )
        assert status == 200, answer
        answers.add(json.dumps(answer))
    server.stop()  # SIGTERM: drains, then flushes the log
    log = _table(served_project, "dev.serving.split_requests")
    served = log[~log["shadow"]]
    assert len(served) == 120 and served["request_id"].is_unique
    assert sorted(served["client_request_id"]) == sorted(f"c{i}" for i in range(120))
    counts = served["served_entity"].value_counts().to_dict()
    assert set(counts) == {"first", "second"} and min(counts.values()) >= 35, counts
    assert set(served["model_version"]) == {"1", "2"}
    assert (served["status_code"] == 200).all() and (served["execution_time_ms"] > 0).all()
    assert {json.dumps(json.loads(r)) for r in served["response"]} == answers
    shadow = log[log["shadow"]]
    assert len(shadow) == 120 and set(shadow["model_name"]) == {"dev.ml.pipe"}
    assert set(shadow["served_entity"]) == {"shadowed"}
    assert (shadow["status_code"] == 200).all()
    assert (log["sampling_fraction"] == 1.0).all() and log["date"].notna().all()


def test_hot_swap_under_load_fails_no_request(
    start_server: Any, served_project: Path, all_flights: pa.Table
) -> None:
    server = start_server("-e", "delay", workers=2)
    payload = _payload(all_flights, 5)
    failures: list[Any] = []
    done = threading.Event()
    sent = [0]

    def client() -> None:
        while not done.is_set():
            status, answer = server.post("/invocations", payload)
            sent[0] += 1
            if status != 200:
                failures.append((status, answer))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        with lakeforge.connect("dev", project_dir=served_project) as ws:
            for move in range(6):
                version = 2 if move % 2 == 0 else 1
                ws.models.set_alias("ml.delay", "champion", version, reason=f"swap {move}")
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    health = server.get("/health")[1]["entities"]["delay/delay-champion"]
                    if health.get("version") == str(version):
                        break
                    time.sleep(0.1)
                else:
                    raise AssertionError(f"the server did not swap to v{version}: {health}")
                time.sleep(0.5)  # both workers swap; keep the load on
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert failures == [] and sent[0] > 50
    with lakeforge.connect("dev", project_dir=served_project) as ws:
        ws.models.rollback("ml.delay", reason="rollback takes the same path")
        back = str(ws.models.resolve("ml.delay@champion").version)
    deadline = time.monotonic() + 30
    while server.get("/health")[1]["entities"]["delay/delay-champion"].get("version") != back:
        assert time.monotonic() < deadline, "rollback was not picked up"
        time.sleep(0.1)
    with lakeforge.connect("dev", project_dir=served_project) as ws:
        ws.models.set_alias("ml.delay", "champion", 1)  # as the other tests expect


def test_kill_9_then_restart_keeps_every_acknowledged_request_once(
    start_server: Any, served_project: Path, all_flights: pa.Table
) -> None:
    server = start_server("-e", "crash", workers=2)
    payload = _payload(all_flights)
    acknowledged = []
    for i in range(60):
        status, _ = server.post(
            "/serving-endpoints/crash/invocations", payload, {"X-Client-Request-Id": f"k{i}"}
        )
        assert status == 200
        acknowledged.append(f"k{i}")
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait(timeout=10)
    with lakeforge.connect("dev", project_dir=served_project) as ws:
        assert segments(spool_dir(ws, "crash"))  # spooled, not yet in the table
        before = ws.tables.read("dev.serving.crash_requests", format="pandas")
    assert before.empty

    restarted = start_server("-e", "crash")
    assert "recovered 60 spooled" in restarted.log.read_text()
    restarted.stop()
    log = _table(served_project, "dev.serving.crash_requests")
    assert sorted(log["client_request_id"]) == sorted(acknowledged)
    assert log["request_id"].is_unique
