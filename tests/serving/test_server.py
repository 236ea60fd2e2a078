"""A live ``lakeforge serve`` on loopback: protocols, errors, auth, metrics."""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa
import pytest

import lakeforge
from tests.serving.conftest import FEATURES, TOKEN, frame

pytestmark = pytest.mark.slow


def _split(data: Any) -> dict[str, Any]:
    return {"dataframe_split": json.loads(data.to_json(orient="split", index=False))}


def test_mlflow_protocol_matches_mlflow_scoring(
    start_server: Any, served_project: Any, all_flights: pa.Table
) -> None:
    import mlflow
    from mlflow.pyfunc.scoring_server import invocations

    from lakeforge.tracking import use_target

    server = start_server("-e", "delay")
    data = frame(all_flights).head(20)[FEATURES]
    payloads = [
        _split(data),
        {"dataframe_records": data.to_dict(orient="records")},
        {"instances": data.to_dict(orient="records")},
        {"inputs": data.to_dict(orient="list")},
        {"dataframe_split": {"columns": FEATURES, "data": [[1, 2, 3, 4, 5, 6]]}},  # ints
    ]
    with lakeforge.connect("dev", project_dir=served_project) as ws, use_target(ws.target):
        model = mlflow.pyfunc.load_model("models:/dev.ml.delay/1")
    for payload in payloads:
        body = json.dumps(payload)
        expected = invocations(body, "application/json", model, model.metadata.get_input_schema())
        for path in ("/invocations", "/serving-endpoints/delay/invocations"):
            status, answer = server.post(path, payload)
            assert status == 200, answer
            assert answer == json.loads(expected.response)
    csv = data.to_csv(index=False)
    expected = invocations(csv, "text/csv", model, model.metadata.get_input_schema())
    status, answer = server.request(
        "POST", "/invocations", csv.encode(), {"Content-Type": "text/csv"}
    )
    assert status == 200 and answer == json.loads(expected.response)
    status, answer = server.request("POST", "/invocations", b"x", {"Content-Type": "text/plain"})
    assert status == 415 and "content types" in answer["message"]


def test_v2_protocol_and_metadata(start_server: Any, all_flights: pa.Table) -> None:
    server = start_server("-e", "delay")
    data = frame(all_flights).head(5)[FEATURES]
    inputs = [
        {"name": c, "shape": [5], "datatype": "FP64", "data": data[c].tolist()} for c in FEATURES
    ]
    status, answer = server.post("/v2/models/delay/infer", {"id": "abc", "inputs": inputs})
    assert status == 200, answer
    _, mlflow_answer = server.post("/invocations", _split(data))
    assert answer["id"] == "abc" and answer["model_name"] == "delay"
    health = server.get("/health")[1]["entities"]["delay/delay-champion"]
    assert answer["model_version"] == health["version"]
    (output,) = answer["outputs"]
    assert output["shape"] == [5] and output["data"] == mlflow_answer["predictions"]
    assert server.get("/v2/models/delay/ready")[0] == 200
    assert server.get("/v2/health/live")[0] == 200
    status, meta = server.get("/v2/models/delay")
    assert status == 200 and [i["name"] for i in meta["inputs"]] == FEATURES
    status, answer = server.post("/v2/models/delay/infer", {"inputs": [{"name": "month"}]})
    assert status == 400 and "datatype" in answer["error"]


def test_errors_name_what_was_wrong(start_server: Any, all_flights: pa.Table) -> None:
    server = start_server("-e", "delay", "-e", "flaky", "-e", "pipe")
    missing = {"dataframe_split": {"columns": ["month"], "data": [[1.0]]}}
    status, answer = server.post("/serving-endpoints/delay/invocations", missing)
    assert status == 400 and "day" in answer["message"], answer
    row = dict.fromkeys(FEATURES, 1.0) | {"dep_time": "late"}
    status, answer = server.post(
        "/serving-endpoints/delay/invocations", {"dataframe_records": [row]}
    )
    assert status == 400 and "dep_time" in answer["message"], answer
    status, answer = server.post("/serving-endpoints/delay/invocations", {"rows": []})
    assert status == 400 and "dataframe_split" in answer["message"]
    status, answer = server.request("POST", "/serving-endpoints/delay/invocations", b"{not json")
    assert status == 400 and "JSON" in answer["message"]

    status, answer = server.post("/serving-endpoints/nope/invocations", missing)
    assert status == 404 and "nope" in answer["message"] and "delay" in answer["message"]
    status, _ = server.post("/invocations", missing)  # several endpoints: no default one
    assert status == 404

    crash = {"dataframe_records": [{"x": -1.0}]}
    status, answer = server.post("/serving-endpoints/flaky/invocations", crash)
    assert status == 500 and "secret" not in json.dumps(answer), answer
    assert "secret internal detail" in server.log.read_text()  # the trace is logged
    stall = {"dataframe_records": [{"x": -2.0}]}
    status, answer = server.post("/serving-endpoints/flaky/invocations", stall)
    assert status == 504 and "timeout" in answer["message"]
    time.sleep(2.5)  # the stalled call still holds the entity's scoring thread
    status, answer = server.post(
        "/serving-endpoints/flaky/invocations", {"dataframe_records": [{"x": 2.0}]}
    )
    assert (status, answer) == (200, {"predictions": [{"x": 4.0}]})  # a Series, as MLflow

    data = frame(all_flights).head(2)[FEATURES]
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert server.post("/serving-endpoints/pipe/invocations", _split(data))[0] == 401
    bad = {"Authorization": "Bearer nope"}
    assert server.post("/serving-endpoints/pipe/invocations", _split(data), bad)[0] == 403
    assert server.post("/serving-endpoints/pipe/invocations", _split(data), good)[0] == 200
    big = frame(all_flights).head(400)[FEATURES]
    status, answer = server.post("/serving-endpoints/pipe/invocations", _split(big), good)
    assert status == 413 and "max_payload_mb" in answer["message"]


def test_metrics_count_requests_per_entity(start_server: Any, all_flights: pa.Table) -> None:
    server = start_server("-e", "delay", workers=2)
    data = frame(all_flights).head(3)[FEATURES]
    for _ in range(10):
        assert server.post("/invocations", _split(data))[0] == 200
    server.post("/invocations", {"dataframe_split": {"columns": ["month"], "data": [[1.0]]}})
    status, text = server.get("/metrics")
    assert status == 200
    lines = [line for line in text.splitlines() if 'endpoint="delay"' in line]
    ok = [
        line
        for line in lines
        if line.startswith("lakeforge_serving_requests_total") and 'status="200"' in line
    ]
    assert ok and float(ok[0].split()[-1]) == 10.0, lines
    assert any(line.startswith("lakeforge_serving_errors_total") for line in lines)
    assert any(line.startswith("lakeforge_serving_latency_seconds_bucket") for line in lines)


def test_inference_log_is_sampled(
    start_server: Any, served_project: Any, all_flights: pa.Table
) -> None:
    server = start_server("-e", "delay")
    data = _split(frame(all_flights).head(1)[FEATURES])
    for i in range(200):
        server.post("/invocations", data, {"X-Client-Request-Id": f"s{i}"})
    server.stop()
    with lakeforge.connect("dev", project_dir=served_project) as ws:
        log = ws.tables.read("dev.serving.delay_requests", format="pandas")
    mine = log[log["client_request_id"].str.startswith("s", na=False)]
    assert 60 <= len(mine) <= 140, len(mine)  # binomial(200, 0.5): far outside is a bug
    assert (mine["sampling_fraction"] == 0.5).all()


def test_sigterm_drains_requests_in_flight_and_flushes_the_log(
    start_server: Any, served_project: Any
) -> None:
    import os
    import signal
    import threading

    server = start_server("-e", "slow")
    answers: list[Any] = []
    slow = threading.Thread(
        target=lambda: answers.append(
            server.post("/invocations", {"dataframe_records": [{"x": -2.0}]})
        )
    )
    slow.start()
    time.sleep(1.0)  # the request is being scored (3 s)
    os.kill(server.process.pid, signal.SIGTERM)
    slow.join(timeout=30)
    assert answers == [(200, {"predictions": [{"x": -4.0}]})]
    # uvicorn re-raises the signal once it has shut down cleanly
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    with lakeforge.connect("dev", project_dir=served_project) as ws:
        log = ws.tables.read("dev.serving.slow_requests", format="pandas")
    assert log["status_code"].tolist() == [200]  # flushed on shutdown (interval is an hour)


def test_serve_refuses_an_endpoint_whose_model_is_missing(served_project: Any) -> None:
    import os
    import subprocess
    import sys

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "lakeforge",
                "--project-dir",
                str(served_project),
                "serve",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=os.environ | {"LAKEFORGE_TARGET": "dev", "MLFLOW_DISABLE_TELEMETRY": "true"},
        )

    missing = serve("--model", "ml.nope@champion")
    assert missing.returncode == 1
    assert "entity nope-champion" in missing.stderr and "dev.ml.nope" in missing.stderr
    unknown = serve("-e", "nope")
    assert unknown.returncode == 1 and "unknown endpoint(s) nope" in unknown.stderr
