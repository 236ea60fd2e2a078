"""The matrix path: a LightGBM model (a native Booster, or a scikit-learn API estimator logged
with the lightgbm or sklearn flavor) scored from a NumPy matrix built straight from the
request, giving exactly what MLflow's pyfunc gives, and the batcher's skip-the-queue rule."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lakeforge.serving._entities import Batcher
from lakeforge.serving._model import BoosterPredictor, LoadedModel
from lakeforge.serving._protocol import RequestError, parse_mlflow, parse_v2
from tests.serving.conftest import FEATURES, frame


def _save(
    model: Any, folder: Path, example: pd.DataFrame, flavor: str = "lightgbm", **options: Any
) -> Any:
    import mlflow

    # named requirements: MLflow would otherwise infer them in a subprocess (seconds a model)
    options["pip_requirements"] = ["lightgbm"]
    if flavor == "sklearn":
        options["serialization_format"] = "cloudpickle"
    getattr(mlflow, flavor).save_model(model, str(folder), input_example=example, **options)
    return mlflow.pyfunc.load_model(str(folder))


@pytest.fixture(scope="module")
def data(all_flights: pa.Table) -> pd.DataFrame:
    return frame(all_flights, 600)


@pytest.fixture(scope="module")
def booster(tmp_path_factory: pytest.TempPathFactory, data: pd.DataFrame) -> Any:
    import lightgbm as lgb

    X, y = data[FEATURES], (data["arr_delay"] > 15).astype(int)
    model = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 30)
    return _save(model, tmp_path_factory.mktemp("booster"), X.head(3))


def _split(rows: pd.DataFrame) -> bytes:
    return json.dumps(
        {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    ).encode()


def _tensor(rows: pd.DataFrame, datatype: str = "FP64", nested: bool = False) -> bytes:
    values = rows.to_numpy().tolist()
    data = values if nested else [v for row in values for v in row]
    shape = [len(rows), len(FEATURES)]
    return json.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": data}]}
    ).encode()


def _columns(rows: pd.DataFrame) -> bytes:
    inputs = [
        {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()}
        for c in FEATURES
    ]
    return json.dumps({"inputs": inputs}).encode()


@pytest.mark.parametrize("n", [1, 7, 120])
def test_every_form_scores_as_mlflow_does(booster: Any, data: pd.DataFrame, n: int) -> None:
    model = LoadedModel.wrap("m", "1", booster)
    assert isinstance(model.matrix_fn, BoosterPredictor)
    rows = data[FEATURES].iloc[100 : 100 + n]
    expected = booster.predict(rows)
    for parsed in (
        parse_mlflow(_split(rows)),
        parse_mlflow(json.dumps({"dataframe_records": rows.to_dict("records")}).encode()),
        parse_v2(_tensor(rows), names=model.names)[0],
        parse_v2(_tensor(rows, nested=True), names=model.names)[0],
        parse_v2(_columns(rows), names=model.names)[0],
    ):
        matrix = model.frame(parsed)
        assert isinstance(matrix, np.ndarray) and matrix.shape == (n, len(FEATURES))
        assert np.array_equal(model.predict_frame(matrix), expected)


def test_integer_tensors_widen_and_missing_values_stay_missing(
    booster: Any, data: pd.DataFrame
) -> None:
    model = LoadedModel.wrap("m", "1", booster)
    rows = data[FEATURES].iloc[:4].round().astype("int64")
    parsed, _ = parse_v2(_tensor(rows, "INT32"), names=model.names)
    assert np.array_equal(
        model.predict_frame(model.frame(parsed)), booster.predict(rows.astype("float64"))
    )
    gaps = data[FEATURES].iloc[:2].copy()
    gaps.iloc[0, 2] = np.nan
    body = _tensor(gaps).replace(b"NaN", b"null")
    parsed, _ = parse_v2(body, names=model.names)
    assert np.array_equal(model.predict_frame(model.frame(parsed)), booster.predict(gaps))


def test_the_single_row_api_agrees_from_many_threads(booster: Any, data: pd.DataFrame) -> None:
    predictor = LoadedModel.wrap("m", "1", booster).matrix_fn
    assert predictor is not None
    matrix = data[FEATURES].to_numpy(dtype="float64")
    expected = booster.predict(data[FEATURES])
    wrong: list[int] = []

    def score(offset: int) -> None:
        for i in range(offset, len(matrix), 4):
            if predictor(matrix[i : i + 1])[0] != expected[i]:
                wrong.append(i)

    threads = [threading.Thread(target=score, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    raw = booster._model_impl.lgb_model  # float32 goes through Booster.predict, unchanged
    assert np.array_equal(
        predictor(matrix.astype("float32")), raw.predict(matrix.astype("float32"))
    )


KINDS = ("binary", "binary strings", "multiclass strings", "regressor")


def _estimator(kind: str, data: pd.DataFrame, **params: Any) -> Any:
    """A scikit-learn API LightGBM model of ``kind`` fitted on the flights' features."""
    import lightgbm as lgb

    X, delay = data[FEATURES], data["arr_delay"]
    if kind == "regressor":
        return lgb.LGBMRegressor(n_estimators=20, verbose=-1, **params).fit(X, delay)
    labels: Any = (delay > 15).astype(int)
    if kind == "binary strings":
        labels = np.where(delay > 15, "late", "on time")
    elif kind == "multiclass strings":
        labels = pd.cut(delay, [-np.inf, 0, 30, np.inf], labels=["early", "late", "very late"])
        labels = labels.astype(str)
    return lgb.LGBMClassifier(n_estimators=20, verbose=-1, **params).fit(X, labels)


@pytest.fixture(scope="module")
def estimators(tmp_path_factory: pytest.TempPathFactory, data: pd.DataFrame) -> dict[str, Any]:
    """Every kind, logged with each flavor that takes a scikit-learn API LightGBM model."""
    folder = tmp_path_factory.mktemp("estimators")
    return {
        f"{kind}/{flavor}": _save(
            _estimator(kind, data), folder / f"{kind}-{flavor}", data[FEATURES].head(3), flavor
        )
        for kind in KINDS
        for flavor in ("lightgbm", "sklearn")
    }


def _random_rows(data: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows drawn uniformly within each feature's range, one value in 20 missing."""
    rng = np.random.default_rng(seed)
    features = data[FEATURES]
    values = rng.uniform(features.min(), features.max(), size=(n, len(FEATURES)))
    values[rng.random(values.shape) < 0.05] = np.nan
    return pd.DataFrame(values, columns=FEATURES)


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 500])
@pytest.mark.parametrize("flavor", ["lightgbm", "sklearn"])
@pytest.mark.parametrize("kind", KINDS)
def test_scikit_learn_api_models_score_as_their_pyfunc_does(
    estimators: dict[str, Any], data: pd.DataFrame, kind: str, flavor: str, n: int
) -> None:
    pyfunc = estimators[f"{kind}/{flavor}"]
    model = LoadedModel.wrap("m", "1", pyfunc)
    assert model.matrix_fn is not None, "an LGBM estimator takes the matrix path"
    for seed in range(40 if n == 1 else 4):
        rows = _random_rows(data, n, seed)
        expected = pyfunc.predict(rows)  # classifiers: the class labels, as their predict
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            matrix = model.frame(parse_mlflow(_split(rows)))
            assert isinstance(matrix, np.ndarray)
            predicted = model.predict_frame(matrix)
        assert warned == [], [str(w.message) for w in warned]  # none per request
        assert isinstance(predicted, np.ndarray) and predicted.dtype == expected.dtype
        assert np.array_equal(predicted, expected), (kind, flavor, seed)


@pytest.mark.slow
def test_no_rows_fail_as_they_fail_in_the_pyfunc(
    booster: Any, estimators: dict[str, Any], data: pd.DataFrame
) -> None:
    for pyfunc in (booster, *estimators.values()):
        model = LoadedModel.wrap("m", "1", pyfunc)
        with pytest.raises(ValueError, match="non empty") as mlflow_error:
            pyfunc.predict(data[FEATURES].head(0))
        with pytest.raises(ValueError) as ours:
            model.predict_frame(np.empty((0, len(FEATURES))))
        assert str(ours.value) == str(mlflow_error.value)


@pytest.mark.slow
def test_models_the_matrix_path_must_not_take(
    tmp_path: Path, booster: Any, data: pd.DataFrame
) -> None:
    import lightgbm as lgb

    X = data[FEATURES]
    # a pyfunc that predicts probabilities, and an estimator with prediction-time options
    proba = _estimator("binary", data)
    early = _estimator("binary", data, pred_early_stop=True, pred_early_stop_margin=0.5)
    for name, pyfunc in (
        (
            "proba",
            _save(proba, tmp_path / "p", X.head(2), "sklearn", pyfunc_predict_fn="predict_proba"),
        ),
        ("early", _save(early, tmp_path / "e", X.head(2))),
    ):
        model = LoadedModel.wrap("m", "1", pyfunc)
        assert model.matrix_fn is None, name
        assert isinstance(model.frame(parse_mlflow(_split(X.head(2)))), pd.DataFrame)
    three = (data["arr_delay"] // 30).clip(0, 2).astype(int)
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1}, lgb.Dataset(X, three), 5
    )
    model = LoadedModel.wrap("m", "1", _save(multi, tmp_path / "multi", X.head(2)))
    assert model.matrix_fn is not None
    row = X.head(1).to_numpy()
    assert np.array_equal(model.predict_frame(row), multi.predict(row))  # (1, 3): not one value


@pytest.mark.parametrize(
    ("tensor", "named"),
    [
        ({"shape": [2, 5], "data": [1.0] * 10}, ["[2, 5]", "[rows, 6]", "month", "hour"]),
        ({"shape": [2, 6], "data": [1.0] * 11}, ["needs 12 values", "has 11"]),
        ({"shape": [1, 6], "datatype": "BYTES", "data": ["a"] * 6}, ["'BYTES'", "FP64", "INT8"]),
        ({"shape": [1, 6], "data": ["1.5"] * 6}, ["numbers", "FP64"]),
        ({"shape": [1, 6], "data": [True] * 6}, ["numbers"]),
        ({"shape": [1, 6], "datatype": "INT8", "data": [300] * 6}, ["INT8"]),
        ({"shape": [1, 6], "datatype": "INT64", "data": [1.5] * 6}, ["INT64"]),
        ({"shape": [1, -6], "data": [1.0] * 6}, ["shape", ">= 0"]),
    ],
)
def test_a_wrong_tensor_is_refused_by_what_is_wrong(
    booster: Any, tensor: dict[str, Any], named: list[str]
) -> None:
    model = LoadedModel.wrap("m", "1", booster)
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP64", **tensor}]}).encode()
    with pytest.raises(RequestError) as refused:
        model.frame(parse_v2(body, names=model.names)[0])
    assert refused.value.status == 400
    assert all(part in refused.value.message for part in named), refused.value.message
    assert json.loads(refused.value.body(v2=True))["error"] == refused.value.message


def test_a_request_skips_the_queue_only_when_it_arrives_alone() -> None:
    batcher = Batcher("t", 100)

    async def run() -> tuple[bool, list[bool], bool, bool]:
        async def decide() -> bool:  # as _app._score: alone, or else queued
            if await batcher.alone():
                return True
            await batcher.submit(model, np.zeros((1, 1)))
            return False

        alone = await decide()
        together = await asyncio.gather(*(decide() for _ in range(3)))
        answer = batcher.submit(model, np.zeros((1, 1)))  # queued, not answered yet
        busy = await batcher.alone()
        await answer
        return alone, together, busy, await batcher.alone()

    class Model:  # stands in for a LoadedModel: the batcher calls predict_frame
        def predict_frame(self, matrix: np.ndarray) -> np.ndarray:
            return matrix[:, 0]

    model: Any = Model()
    try:
        alone, together, busy, after = asyncio.run(run())
    finally:
        batcher.stop()
    assert alone and together == [False, False, False]
    assert not busy and after  # the queue decides while it holds a request, then not
