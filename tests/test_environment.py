"""A library leaves its caller's process as it found it: environment and MLflow URIs."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression

import lakeforge
from lakeforge.features import FeatureLookup
from lakeforge.tracking import use_target
from tests.conftest import git_init

# What MLflow's fluent setters and Lakeforge once wrote to os.environ.
_WATCHED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
    "LAKEFORGE_PROJECT_DIR",
    "LAKEFORGE_TARGET",
)


@pytest.mark.slow
def test_connect_use_target_and_feature_scoring_leave_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _WATCHED:
        monkeypatch.delenv(name, raising=False)
    before_env = dict(os.environ)
    before_uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())

    folder = lakeforge.init_project("envproj", tmp_path)
    git_init(folder)
    start = datetime(2024, 1, 1)
    hours = [start + timedelta(hours=h) for h in range(40)]
    with lakeforge.connect("dev", project_dir=folder) as ws:
        with use_target(ws.target):
            assert mlflow.get_tracking_uri() == ws.target.mlflow_tracking_uri
        ws.features.create(
            "dev.fs.temps",
            pa.table({"site": ["a", "b"] * 20, "at": hours, "temp": [float(h) for h in range(40)]}),
            primary_keys="site",
            timestamp_key="at",
        )
        labels = pa.table({"site": ["a", "b"] * 20, "at": hours, "hot": [h % 2 for h in range(40)]})
        training_set = ws.create_training_set(
            labels, [FeatureLookup("dev.fs.temps", "site", timestamp_lookup_key="at")], label="hot"
        )
        frame = training_set.load_df(format="pandas")
        model = LogisticRegression().fit(frame[["temp"]], frame["hot"])
        with ws.start_run("train", autolog=False):
            version = ws.log_model(model, "dev.ml.hot", training_set=training_set)
        scored = ws.score_batch(f"models:/dev.ml.hot/{version.version}", labels.drop(["hot"]))
        assert len(scored) == 40

    leaked = {
        name: (before_env.get(name), os.environ.get(name))
        for name in set(before_env) | set(os.environ)
        if before_env.get(name) != os.environ.get(name)
    }
    assert leaked == {}, f"changed in the caller's environment (before, after): {leaked}"
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before_uris
