"""A project with deployment policies, shared by the deployment tests (MLflow stores are slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

import lakeforge
from lakeforge import Workspace
from tests.conftest import git_init

POLICY = """
name: cd
groups:
  ml-leads: [bob, carol]
targets:
  dev:
    deployment:
      approval: manual
      approvers: [alice, group:ml-leads]
      separation_of_duties: true
      validation:
        mode: enabled
        checks:
          required_tags: [team]
          description: true
          signature: true
          lineage: true
          metrics: {training_accuracy_score: {min: 0.6}}
          max_size_mb: 50
          max_latency_p95_ms: 500
          forbidden_columns: [ssn]
        champion:
          sql: >
            SELECT dep_delay, distance, hour, (arr_delay > 15)::INT AS late
            FROM dev.silver.holdout WHERE arr_delay IS NOT NULL
          label: late
          model_type: classifier
          metrics: {roc_auc: {min_improvement: 0.0, max_regression: 0.02}}
          baseline: heuristic
      models:                       # per-model rules, first match wins
        "dev.ml.reg_*":             # a regressor: its own held-out data and metrics
          approval: auto
          validation:
            checks: {signature: true, description: true}
            champion:
              sql: >
                SELECT dep_delay, distance, hour, arr_delay::DOUBLE AS arr_delay
                FROM dev.silver.holdout WHERE arr_delay IS NOT NULL
              label: arr_delay
              model_type: regressor
              metrics: {rmse: {max_regression: 1.0}}
              baseline: heuristic
        "dev.ml.autoroll_*":
          rollback: auto
  staging:
    promote_from: [dev]
    deployment:
      approval: auto
      validation: {mode: enabled, checks: {signature: true}}
"""
FEATURES = ["dep_delay", "distance", "hour"]


@pytest.fixture(scope="session")
def cd_project(tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table) -> Path:
    folder = tmp_path_factory.mktemp("cd") / "cd"
    folder.mkdir()
    (folder / "lakeforge.yaml").write_text(POLICY)
    (folder / ".gitignore").write_text(".lakeforge/\n")
    git_init(folder)
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.tables.write("dev.silver.flights", all_flights.slice(0, 20_000))
        ws.tables.write("dev.silver.holdout", all_flights.slice(200_000, 5_000))
    return folder


@pytest.fixture
def cd_ws(cd_project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("LAKEFORGE_USER", "alice")
    with lakeforge.connect("dev", project_dir=cd_project) as ws:
        yield ws


def train(
    ws: Workspace,
    name: str,
    *,
    quality: str = "good",
    tags: dict[str, str] | None = None,
    extra_column: str | None = None,
    description: str | None = "Late-arrival classifier for the deployment tests.",
) -> int:
    """Register a version: ``good`` learns from the data, ``bad`` from shuffled labels."""
    with ws.start_run("train", autolog=True):
        df = ws.sql(
            "SELECT dep_delay, distance, hour, (arr_delay > 15)::INT AS late "
            "FROM dev.silver.flights WHERE arr_delay IS NOT NULL"
        ).to_pandas()
        X = df[FEATURES].astype("float64")
        if extra_column:
            X[extra_column] = X["distance"]
        y = df["late"]
        if quality == "bad":
            y = pd.Series(np.random.default_rng(0).permutation(y.to_numpy()))
        model = LogisticRegression(max_iter=300).fit(X, y)
        version = ws.log_model(
            model, name, input_example=X.head(3), tags=tags, description=description
        )
    return int(version.version)


def train_regressor(ws: Workspace, name: str) -> int:
    """Register a regressor of the arrival delay, described by a person."""
    with ws.start_run("train-regressor", autolog=False):
        df = ws.sql(
            "SELECT dep_delay, distance, hour, arr_delay::DOUBLE AS arr_delay "
            "FROM dev.silver.flights WHERE arr_delay IS NOT NULL"
        ).to_pandas()
        X = df[FEATURES].astype("float64")
        model = LinearRegression().fit(X, df["arr_delay"])
        version = ws.log_model(
            model, name, input_example=X.head(3), description="Arrival delay in minutes."
        )
    return int(version.version)
