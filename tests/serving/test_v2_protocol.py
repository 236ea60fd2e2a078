"""Open Inference Protocol parity, live: one ``[rows, n_features]`` tensor, readiness,
metadata and ``{"error": ...}`` bodies; a native Booster served from the matrix path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

import lakeforge
from tests.conftest import git_init
from tests.serving.conftest import FEATURES, Server, frame

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def booster_server(
    tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table
) -> Iterator[Server]:
    """``lakeforge serve --model ml.booster@champion``: a native ``lgb.train`` Booster."""
    import lightgbm as lgb

    folder = lakeforge.init_project("booster", tmp_path_factory.mktemp("booster"))
    git_init(folder)
    data = frame(all_flights, 1000)
    X, y = data[FEATURES], (data["arr_delay"] > 15).astype(int)
    with lakeforge.connect("dev", project_dir=folder) as ws:
        with ws.start_run("train", autolog=False):
            booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 40)
            ws.log_model(booster, "ml.booster", input_example=X.head(3))
        ws.models.set_alias("ml.booster", "champion", 1)
    server = Server(folder, "--model", "ml.booster@champion")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def rows(all_flights: pa.Table) -> pd.DataFrame:
    return frame(all_flights).iloc[200:212][FEATURES]


def tensor(rows: pd.DataFrame, *, nested: bool = False, datatype: str = "FP64") -> Any:
    values = rows.to_numpy().tolist()
    data = values if nested else [v for row in values for v in row]
    shape = [len(rows), len(rows.columns)]
    return {"inputs": [{"name": "input-0", "datatype": datatype, "shape": shape, "data": data}]}


def per_column(rows: pd.DataFrame) -> Any:
    inputs = [
        {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()}
        for c in rows.columns
    ]
    return {"inputs": inputs}


def split(rows: pd.DataFrame) -> Any:
    return {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}


def predictions(server: Server, path: str, payload: Any) -> list[Any]:
    status, answer = server.post(path, payload)
    assert status == 200, answer
    return answer["predictions"] if "predictions" in answer else answer["outputs"][0]["data"]


@pytest.mark.parametrize("n", [1, 12])
def test_one_2d_tensor_scores_as_tensors_per_column_and_mlflow_split(
    start_server: Any, booster_server: Server, rows: pd.DataFrame, n: int
) -> None:
    delay = start_server("-e", "delay")  # the scikit-learn API: a DataFrame from the matrix
    for server, name in ((delay, "delay"), (booster_server, "booster")):
        infer = f"/v2/models/{name}/infer"
        part = rows.head(n)
        expected = predictions(server, "/invocations", split(part))
        assert len(expected) == n
        assert predictions(server, infer, tensor(part)) == expected
        assert predictions(server, infer, tensor(part, nested=True)) == expected
        assert predictions(server, infer, per_column(part)) == expected
        whole = part.round().astype("int64")  # integers widen to the double signature
        assert predictions(server, infer, tensor(whole, datatype="INT64")) == predictions(
            server, "/invocations", split(whole)
        )


def test_concurrent_requests_get_their_own_answers(
    booster_server: Server, rows: pd.DataFrame
) -> None:
    """Requests arriving together are batched, alone ones skip the queue: same answers."""
    infer = "/v2/models/booster/infer"
    expected = [predictions(booster_server, infer, tensor(rows.iloc[[i]]))[0] for i in range(12)]
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(
                lambda i: predictions(booster_server, infer, tensor(rows.iloc[[i % 12]])), range(96)
            )
        )
    assert [g[0] for g in got] == [expected[i % 12] for i in range(96)]


def test_v2_errors_say_what_was_wrong_in_the_protocols_body(
    booster_server: Server, rows: pd.DataFrame
) -> None:
    infer = "/v2/models/booster/infer"
    wrong_shape = tensor(rows[FEATURES[:5]])
    status, answer = booster_server.post(infer, wrong_shape)
    assert status == 400 and "[12, 5]" in answer["error"] and "[rows, 6]" in answer["error"]
    assert all(name in answer["error"] for name in FEATURES), answer
    short = tensor(rows)
    short["inputs"][0]["data"].pop()
    status, answer = booster_server.post(infer, short)
    assert status == 400 and "needs 72 values" in answer["error"], answer
    status, answer = booster_server.post(infer, tensor(rows, datatype="BOOL"))
    assert status == 400 and "'BOOL'" in answer["error"] and "FP32" in answer["error"]
    status, answer = booster_server.post("/v2/models/nope/infer", tensor(rows))
    assert status == 404 and "nope" in answer["error"] and "booster" in answer["error"]
    status, answer = booster_server.get("/v2/models/nope/ready")
    assert status == 404 and "nope" in answer["error"]


def test_ready_and_metadata(booster_server: Server) -> None:
    assert booster_server.get("/v2/models/booster/ready") == (200, {})
    assert booster_server.get("/v2/health/ready")[0] == 200
    status, meta = booster_server.get("/v2/models/booster")
    assert status == 200 and meta["name"] == "booster" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in FEATURES]
