"""Bad input: ``lakeforge serve`` answers what MLflow's scoring server answers (status,
error code), with a message that names what was wrong."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import lakeforge
from tests.serving.conftest import FEATURES, TOKEN, Server, frame

pytestmark = pytest.mark.slow
MODELS = {"delay": "models:/dev.ml.delay/1", "pipe": "models:/dev.ml.pipe/1"}  # LightGBM, sklearn


@pytest.fixture(scope="module")
def server(served_project: Path) -> Iterator[Server]:
    server = Server(served_project, "-e", "delay", "-e", "pipe")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def models(served_project: Path) -> dict[str, Any]:
    import mlflow

    from lakeforge.tracking import use_target

    with lakeforge.connect("dev", project_dir=served_project) as ws, use_target(ws.target):
        return {name: mlflow.pyfunc.load_model(uri) for name, uri in MODELS.items()}


def mlflow_answer(model: Any, body: bytes) -> tuple[int, Any]:
    """What ``mlflow models serve`` answers: its handler, errors mapped as its app maps them."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    try:
        answer = invocations(body, "application/json", model, model.metadata.get_input_schema())
    except MlflowException as exc:
        return exc.get_http_status_code(), json.loads(exc.serialize_as_json())
    return answer.status, json.loads(answer.response)


def ask(server: Server, endpoint: str, body: bytes) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"} if endpoint == "pipe" else {}
    return server.request("POST", f"/serving-endpoints/{endpoint}/invocations", body, headers)


def compare(server: Server, models: dict[str, Any], endpoint: str, payload: Any) -> Any:
    """Send ``payload`` to both servers; the status and error code agree; ours is returned."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, answer = ask(server, endpoint, body)
    expected_status, expected = mlflow_answer(models[endpoint], body)
    assert status == expected_status, (answer, expected)
    if status == 200:
        assert answer == expected
    else:
        assert answer["error_code"] == expected["error_code"], (answer, expected)
    return answer


def rows(all_flights: pa.Table, n: int = 3) -> list[list[float]]:
    return frame(all_flights).head(n)[FEATURES].to_numpy().tolist()  # type: ignore[no-any-return]


def test_a_null_the_model_cannot_take_is_a_400_naming_the_column(
    server: Server, models: dict[str, Any], all_flights: pa.Table
) -> None:
    data = rows(all_flights)
    data[1][FEATURES.index("distance")] = None
    split = {"dataframe_split": {"columns": FEATURES, "data": data}}
    records = {"dataframe_records": [dict(zip(FEATURES, row, strict=True)) for row in data]}
    for payload in (split, records):
        answer = compare(server, models, "pipe", payload)  # scikit-learn refuses NaN: 400
        assert "distance" in answer["message"] and "null" in answer["message"], answer
        assert "dep_time" not in answer["message"]
        compare(server, models, "delay", payload)  # LightGBM takes NaN: 200, same predictions


def test_an_empty_input_is_a_400_that_says_so(
    server: Server, models: dict[str, Any], all_flights: pa.Table
) -> None:
    empty_split = {"dataframe_split": {"columns": FEATURES, "data": []}}
    for endpoint in MODELS:
        answer = compare(server, models, endpoint, empty_split)
        assert "empty" in answer["message"], answer
        for key in ("dataframe_records", "instances", "inputs"):
            answer = compare(server, models, endpoint, {key: []})
            assert "empty" in answer["message"] and "missing" not in answer["message"], answer


def test_nan_and_infinity_literals_are_accepted(
    server: Server, models: dict[str, Any], all_flights: pa.Table
) -> None:
    data = rows(all_flights)
    data[0][0], data[1][1], data[2][2] = math.nan, math.inf, -math.inf
    body = json.dumps({"dataframe_split": {"columns": FEATURES, "data": data}}).encode()
    assert b"NaN" in body and b"-Infinity" in body
    assert compare(server, models, "delay", body)["predictions"]
    answer = compare(server, models, "pipe", body)  # scikit-learn refuses them: 400, named
    for name in FEATURES[:3]:
        assert name in answer["message"], answer


def test_a_duplicate_column_is_a_400_naming_it(
    server: Server, models: dict[str, Any], all_flights: pa.Table
) -> None:
    data = [[*row, row[0]] for row in rows(all_flights)]
    payload = {"dataframe_split": {"columns": [*FEATURES, "month"], "data": data}}
    for endpoint in MODELS:
        answer = compare(server, models, endpoint, payload)
        assert "duplicate" in answer["message"] and "'month'" in answer["message"], answer


def test_every_missing_column_is_named(
    server: Server, models: dict[str, Any], all_flights: pa.Table
) -> None:
    data = [row[:3] for row in rows(all_flights)]
    payload = {"dataframe_split": {"columns": FEATURES[:3], "data": data}}
    answer = compare(server, models, "delay", payload)
    _, expected = mlflow_answer(models["delay"], json.dumps(payload).encode())
    named = re.search(r"Model is missing inputs \[[^\]]*\]", expected["message"])
    assert named and named.group(0) in answer["message"], (answer, expected)
    assert all(f"'{name}'" in answer["message"] for name in FEATURES[3:])


def test_get_version_answers_the_mlflow_version(
    server: Server, models: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from mlflow.pyfunc.scoring_server import init

    monkeypatch.delenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", raising=False)  # init sets it
    app = init(models["delay"])
    (route,) = [r for r in app.routes if getattr(r, "path", None) == "/version"]
    expected = asyncio.run(route.endpoint())  # type: ignore[attr-defined]
    status, answer = server.get("/version")
    assert (status, str(answer)) == (expected.status_code, expected.body.decode())


def test_v2_integer_tensors_widen_to_the_signature_on_every_path(
    server: Server, all_flights: pa.Table
) -> None:
    data = [[int(v) for v in row] for row in rows(all_flights)]
    inputs = [
        {"name": name, "datatype": "INT64", "shape": [len(data)], "data": [r[i] for r in data]}
        for i, name in enumerate(FEATURES)
    ]
    fast = server.post("/v2/models/delay/infer", {"inputs": inputs})
    # parameters send the request through MLflow's schema enforcement instead
    slow = server.post("/v2/models/delay/infer", {"inputs": inputs, "parameters": {"p": 1}})
    assert fast[0] == slow[0] == 200, (fast, slow)
    assert fast[1]["outputs"] == slow[1]["outputs"]
    split = {"dataframe_split": {"columns": FEATURES, "data": data}}
    assert (
        server.post("/serving-endpoints/delay/invocations", split)[1]["predictions"]
        == (fast[1]["outputs"][0]["data"])
    )
