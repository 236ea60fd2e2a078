"""Training runs on real MLflow stores: lineage, autolog, model logging and registration."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import lakeforge
from lakeforge import Workspace
from lakeforge.errors import LakeforgeError, PermissionDeniedError
from lakeforge.tracking import SignatureError, TrackingError, check_reachable
from tests.conftest import git_init

FEATURES = ["dep_delay", "distance", "hour"]
QUERY = """SELECT dep_delay, distance, hour, (arr_delay > 15)::INT AS late
           FROM dev.silver.flights WHERE arr_delay IS NOT NULL"""


def training_data(ws: Workspace) -> tuple[pd.DataFrame, pd.Series]:
    df = ws.sql(QUERY).to_pandas()
    return df[FEATURES].astype("float64"), df["late"]


def test_a_training_script_produces_a_registered_version_with_lineage(
    ml_ws: Workspace, ml_project: Path
) -> None:
    commit = git_init_commit(ml_project)
    with ml_ws.start_run("train", run_name="lineage") as run:
        X, y = training_data(ml_ws)
        model = LogisticRegression(max_iter=300).fit(X, y)
        version = ml_ws.log_model(model, "dev.ml.late", input_example=X.head(5))
    client = run.client
    logged = client.get_run(run.run_id)
    tags = logged.data.tags
    assert tags["lakeforge.git.commit"] == commit and tags["lakeforge.git.branch"] == "main"
    assert tags["lakeforge.git.dirty"] == "false"
    assert tags["lakeforge.target"] == "dev" and tags["lakeforge.project"] == "mlproj"
    assert client.get_experiment(logged.info.experiment_id).name == "mlproj/train"
    # exact Delta version of the table read, as an MLflow dataset input
    [dataset_input] = logged.inputs.dataset_inputs
    source = json.loads(dataset_input.dataset.source)
    assert dataset_input.dataset.source_type == "lakeforge_delta"
    assert source["table"] == "dev.silver.flights" and source["version"] == 0
    assert dataset_input.dataset.digest and "dep_delay" in dataset_input.dataset.schema
    # autolog recorded the estimator's parameters and training metrics
    assert logged.data.params["max_iter"] == "300"
    assert "training_accuracy_score" in logged.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.run_id, "environment")]
    assert artifacts == ["environment/requirements.txt"]
    # the registered version carries description and lineage tags
    assert version.name == "dev.ml.late"
    assert version.tags["lakeforge.git.commit"] == commit
    assert json.loads(version.tags["lakeforge.data_versions"]) == {"dev.silver.flights": 0}
    assert float(version.tags["lakeforge.metric.training_accuracy_score"]) > 0.5
    assert commit[:12] in version.description and "dev.silver.flights@v0" in version.description
    lineage = ml_ws.models.lineage(f"dev.ml.late/{version.version}")
    assert lineage.commit == commit and lineage.data_versions == {"dev.silver.flights": 0}
    assert lineage.run_id == run.run_id
    # the model loads back with its signature and predicts
    with lakeforge.tracking.use_target(ml_ws.target):
        loaded = mlflow.pyfunc.load_model(f"models:/dev.ml.late/{version.version}")
    assert loaded.metadata.signature is not None
    assert set(np.unique(loaded.predict(X.head(50)))) <= {0, 1}


def git_init_commit(folder: Path) -> str:
    import subprocess

    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_every_table_version_read_is_recorded(ml_ws: Workspace) -> None:
    ml_ws.tables.write("dev.silver.extra", pd.DataFrame({"a": [1.0, 2.0]}), mode="overwrite")
    ml_ws.tables.write("dev.silver.extra", pd.DataFrame({"a": [3.0]}))
    latest = ml_ws.tables.describe("dev.silver.extra").version
    with ml_ws.start_run("train", autolog=False) as run:
        ml_ws.tables.read("dev.silver.extra", version=latest - 1)
        ml_ws.sql("SELECT sum(a) FROM dev.silver.extra")
        ml_ws.sql("SELECT count(*) FROM dev.silver.extra")  # same version: recorded once
    assert run.data_versions == {"dev.silver.extra": latest}  # newest read wins in the dict
    assert sorted(v for (_, v) in run.reads) == [latest - 1, latest]
    logged = run.client.get_run(run.run_id)
    assert len(logged.inputs.dataset_inputs) == 2


def test_dirty_checkout_is_flagged(tmp_path: Path) -> None:
    folder = lakeforge.init_project("dirty", tmp_path)
    git_init(folder)
    (folder / "lakeforge.yaml").write_text((folder / "lakeforge.yaml").read_text() + "\n# edited\n")
    with (
        lakeforge.connect("dev", project_dir=folder) as ws,
        ws.start_run("train", autolog=False) as run,
    ):
        pass
    assert run.client.get_run(run.run_id).data.tags["lakeforge.git.dirty"] == "true"


def test_model_without_signature_or_example_is_refused_with_advice(ml_ws: Workspace) -> None:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    with (
        ml_ws.start_run("train", autolog=False),
        pytest.raises(SignatureError, match="input_example=X"),
    ):
        ml_ws.log_model(model, "dev.ml.nosig")
    with pytest.raises(LakeforgeError, match="needs an active run"):
        ml_ws.log_model(model, "dev.ml.nosig", input_example=X)
    with ml_ws.start_run("train", autolog=False), pytest.raises(PermissionDeniedError):
        ml_ws.log_model(model, "prod.ml.m", input_example=X)


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_lightgbm_and_xgboost_are_autologged_and_logged(ml_ws: Workspace, library: str) -> None:
    with ml_ws.start_run("train", run_name=library) as run:
        X, y = training_data(ml_ws)
        X, y = X.head(3000), y.head(3000)
        if library == "lightgbm":
            import lightgbm

            model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)
        else:
            import xgboost

            model = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
        version = ml_ws.log_model(model, f"dev.ml.{library}", input_example=X.head(3))
    params = run.client.get_run(run.run_id).data.params
    assert params.get("num_boost_round") == "10"  # logged by the library's own autolog
    assert int(version.version) == 1


def test_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "lakeforge.yaml").write_text(
        "name: p\ntargets:\n  dev:\n    mlflow_tracking_uri: http://127.0.0.1:9/\n"
    )
    started = time.monotonic()
    with (
        lakeforge.connect(project_dir=folder) as ws,
        pytest.raises(TrackingError, match="cannot reach the MLflow tracking server"),
        ws.start_run(),
    ):
        pass
    assert time.monotonic() - started < 10


@pytest.mark.postgres
def test_unreachable_backend_store_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(TrackingError, match="cannot reach the MLflow backend store"):
        check_reachable("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    assert time.monotonic() - started < 10


def test_reads_in_a_nested_run_are_recorded_on_that_run_only(ml_ws: Workspace) -> None:
    with ml_ws.start_run("train", autolog=False) as parent:
        with ml_ws.start_run("train", autolog=False, nested=True) as child:
            ml_ws.sql("SELECT count(*) FROM dev.silver.flights")
        assert child.data_versions == {"dev.silver.flights": 0}
        assert parent.data_versions == {"dev.silver.flights": 0}  # the parent read it too
    child_run = child.client.get_run(child.run_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert len(child_run.inputs.dataset_inputs) == 1
    assert len(parent.client.get_run(parent.run_id).inputs.dataset_inputs) == 1
