"""Model evaluation on held-out real flights: metrics and PNG plots on the MLflow run."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from lightgbm import LGBMRegressor
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from lakeforge import Workspace
from lakeforge.tracking import ModelLoggingError
from lakeforge.tracking._evaluate import EVALUATED_MODEL, EvaluationError, evaluate
from lakeforge.tracking._mlflow import client_for

FEATURES = ["dep_delay", "distance", "hour"]
QUERY = """SELECT dep_delay, distance, hour, arr_delay, arr_delay > 15 AS late
           FROM dev.silver.flights WHERE arr_delay IS NOT NULL AND dep_delay IS NOT NULL"""
CLASSIFIER_PLOTS = {
    "roc_curve_plot.png",
    "precision_recall_curve_plot.png",
    "lift_curve_plot.png",
    "confusion_matrix.png",
}


@pytest.fixture
def split(ws: Workspace, all_flights: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """4,000 real January flights in dev.silver.flights: 3,000 to train, the rest held out."""
    january = all_flights.filter(pc.equal(all_flights.column("month"), 1)).slice(0, 4000)
    ws.tables.write("dev.silver.flights", january)
    df = ws.sql(QUERY).to_pandas()
    return df.iloc[:3000], df.iloc[3000:]


def pngs(ws: Workspace, run_id: str) -> dict[str, int]:
    """The PNG artifacts at the root of a run, with their sizes."""
    files = client_for(ws.target).list_artifacts(run_id)
    return {f.path: f.file_size or 0 for f in files if f.path.endswith(".png")}


def test_classifier_on_arrow_data_logs_metrics_and_plots_on_the_active_run(
    ws: Workspace, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    held_out = pa.Table.from_pandas(test[[*FEATURES, "late"]], preserve_index=False)
    with ws.start_run("train", run_name="late") as run:
        model = LogisticRegression(max_iter=500).fit(train[FEATURES], train["late"])
        metrics = evaluate(ws.tracking, model, held_out, targets="late", model_type="classifier")

    assert metrics["example_count"] == len(test)
    assert 0.8 < metrics["accuracy_score"] <= 1.0  # dep_delay predicts most late arrivals
    assert 0.85 < metrics["roc_auc"] <= 1.0
    assert 0.0 < metrics["precision_score"] <= 1.0 and 0.0 < metrics["recall_score"] <= 1.0
    logged = client_for(ws.target).get_run(run.run_id).data.metrics
    assert logged["roc_auc"] == pytest.approx(metrics["roc_auc"])
    plots = pngs(ws, run.run_id)
    assert set(plots) >= CLASSIFIER_PLOTS and min(plots.values()) > 1000
    artifacts = client_for(ws.target).list_artifacts(run.run_id)
    assert EVALUATED_MODEL not in {a.path for a in artifacts}  # models live apart in MLflow 3


def test_lightgbm_regressor_without_a_run_gets_an_evaluate_run(
    ws: Workspace, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    model = LGBMRegressor(n_estimators=30, num_leaves=15, verbose=-1)
    model.fit(train[FEATURES], train["arr_delay"])
    metrics = evaluate(
        ws.tracking, model, test[[*FEATURES, "arr_delay"]], targets="arr_delay",
        model_type="regressor",
    )  # fmt: skip

    assert metrics["example_count"] == len(test)
    assert 0.6 < metrics["r2_score"] <= 1.0  # arrival delay follows departure delay
    assert 5 < metrics["root_mean_squared_error"] < 40  # minutes
    assert metrics["mean_absolute_error"] <= metrics["root_mean_squared_error"]
    client = client_for(ws.target)
    experiment = client.get_experiment_by_name("testproj/evaluate")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.tags["lakeforge.pipeline"] == "evaluate"
    assert run.data.metrics["r2_score"] == pytest.approx(metrics["r2_score"])
    plots = pngs(ws, run.info.run_id)
    assert {"predicted_vs_actual_plot.png", "residuals_plot.png"} <= set(plots)
    assert min(plots.values()) > 1000


def test_registered_version_with_a_metric_prefix(
    ws: Workspace, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    with ws.start_run("train") as run:
        model = LogisticRegression(max_iter=500).fit(train[FEATURES], train["late"])
        version = ws.log_model(model, "dev.ml.late", input_example=train[FEATURES].head(5))
        metrics: dict[str, Any] = evaluate(
            ws.tracking, version, test[[*FEATURES, "late"]], targets="late",
            model_type="classifier", metric_prefix="test_",
        )  # fmt: skip
    assert 0.8 < metrics["test_accuracy_score"] <= 1.0
    assert "test_roc_curve_plot.png" in pngs(ws, run.run_id)


def test_types_skops_distrusts_need_model_options(
    ws: Workspace, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, test = split
    model = HistGradientBoostingClassifier(max_iter=10).fit(train[FEATURES], train["late"])
    held_out = test[[*FEATURES, "late"]]
    with pytest.raises(ModelLoggingError, match=r"skops_trusted_types=\['sklearn.ensemble"):
        evaluate(ws.tracking, model, held_out, targets="late", model_type="classifier")
    trusted = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
    metrics = evaluate(
        ws.tracking, model, held_out, targets="late", model_type="classifier",
        model_options={"skops_trusted_types": trusted},
    )  # fmt: skip
    assert 0.85 < metrics["roc_auc"] <= 1.0


def test_bad_inputs_get_clear_errors(ws: Workspace) -> None:
    data = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    with pytest.raises(
        EvaluationError, match="target column 'label' is not in the data; columns: x, y"
    ):
        evaluate(ws.tracking, "runs:/x/model", data, targets="label", model_type="classifier")
    with pytest.raises(EvaluationError, match="model_type must be"):
        evaluate(ws.tracking, "runs:/x/model", data, targets="y", model_type="ranker")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="pandas DataFrame or an Arrow table, got list"):
        evaluate(ws.tracking, "runs:/x/model", [[1, 0]], targets="y", model_type="classifier")
    with pytest.raises(EvaluationError, match="no rows"):
        evaluate(ws.tracking, "runs:/x/model", data.iloc[:0], targets="y", model_type="regressor")
    with pytest.raises(EvaluationError, match="cannot log a model of type object"):
        evaluate(ws.tracking, object(), data, targets="y", model_type="regressor")
