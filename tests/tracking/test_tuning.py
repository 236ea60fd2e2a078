"""Hyperparameter tuning: nested MLflow runs per trial, the study on the state store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

import lakeforge
from lakeforge import Workspace
from lakeforge.state import StateStore, head_revision
from lakeforge.tracking import (
    TAG_STATE,
    SearchSpaceError,
    TrialHandle,
    TuningError,
    parse_space,
    tune,
)
from lakeforge.tracking._mlflow import client_for, use_target
from lakeforge.tracking._runs import SignatureError

SPACE_YAML = """
C: {type: float, low: 0.001, high: 10, log: true}
max_depth: {type: int, low: 2, high: 8}
kernel: {type: categorical, choices: [linear, rbf]}
"""


def quadratic(params: dict[str, Any], trial: TrialHandle) -> float:
    """A cheap objective with its maximum at x = 2."""
    return -((params["x"] - 2.0) ** 2)


def client(ws: Workspace) -> MlflowClient:
    return client_for(ws.target)  # tracking and registry both on the target's store


def test_space_from_config_validates_and_names_the_bad_field() -> None:
    space = parse_space(yaml.safe_load(SPACE_YAML))
    assert set(space.root) == {"C", "max_depth", "kernel"}
    bad = {
        "C": ({"type": "float", "low": "small", "high": 1}, "parameter 'C': field 'low'"),
        "d": ({"type": "int", "low": 5, "high": 2}, "parameter 'd': field 'high': must be >= low"),
        "lr": ({"type": "float", "low": 0, "high": 1, "log": True}, "'lr': field 'log'"),
        "k": ({"type": "categorical", "choices": []}, "parameter 'k': field 'choices'"),
        "n": ({"type": "integer", "low": 1, "high": 2}, "'n': field 'type': must be one of"),
        "m": ({"low": 1, "high": 2}, "parameter 'm': field 'type'"),
        "s": ({"type": "int", "low": 1, "high": 9, "stepp": 2}, "'s': unknown field 'stepp'"),
        "h": ({"type": "float", "low": 1}, "parameter 'h': field 'high': Field required"),
    }
    for name, (spec, message) in bad.items():
        with pytest.raises(SearchSpaceError, match=message):
            parse_space({name: spec})
    with pytest.raises(SearchSpaceError, match="empty"):
        parse_space({})


def test_trials_are_nested_runs_and_the_best_model_is_registered(
    ws: Workspace, flights: pa.Table
) -> None:
    ws.tables.write("dev.silver.flights", flights)
    df = ws.sql(
        "SELECT dep_delay, distance, hour, arr_delay > 15 AS late "
        "FROM dev.silver.flights WHERE arr_delay IS NOT NULL"
    ).to_pandas()
    X, y = df[["dep_delay", "distance", "hour"]], df["late"]
    train, valid = slice(0, 1200), slice(1200, None)

    def objective(params: dict[str, Any], trial: TrialHandle) -> tuple[float, Any]:
        model = LogisticRegression(C=params["C"], max_iter=200).fit(X[train], y[train])
        return float(model.score(X[valid], y[valid])), model

    space = {"C": {"type": "float", "low": 1e-4, "high": 10.0, "log": True}}
    result = tune(
        ws.tracking, objective, space, n_trials=4, seed=1, run_name="tune-late",
        register_as="dev.ml.late", input_example=X.head(5),
    )  # fmt: skip

    assert len(result.trials) == 4 and result.count("complete") == 4
    assert result.best_value == max(t.value or 0.0 for t in result.trials)
    assert 0.8 < result.best_value <= 1.0  # most late arrivals left late
    assert pytest.approx(result.best_params["C"]) == result.best_model.C
    mlflow = client(ws)
    parent = mlflow.get_run(result.run_id)
    assert float(parent.data.params["best_C"]) == pytest.approx(result.best_params["C"])
    assert parent.data.metrics["best_score"] == pytest.approx(result.best_value)
    assert parent.data.metrics["n_trials"] == 4 and parent.data.metrics["n_pruned"] == 0
    assert parent.data.tags["lakeforge.tuning.study"] == result.study_name
    for record in result.trials:
        child = mlflow.get_run(record.run_id)
        assert child.data.tags["mlflow.parentRunId"] == result.run_id
        assert child.data.tags[TAG_STATE] == "complete"
        assert float(child.data.params["C"]) == pytest.approx(record.params["C"])
        assert child.data.metrics["score"] == pytest.approx(record.value)
    version = result.model
    assert version.name == "dev.ml.late" and version.run_id == result.run_id


def test_same_seed_gives_the_same_trial_params(ws: Workspace) -> None:
    space = {
        "x": {"type": "float", "low": -5.0, "high": 5.0},
        "k": {"type": "categorical", "choices": ["a", "b", "c"]},
    }

    def params(seed: int, n_trials: int) -> list[dict[str, Any]]:
        result = tune(ws.tracking, quadratic, space, n_trials=n_trials, seed=seed, pruner="none")
        return [t.params for t in result.trials]

    first = params(7, 11)  # 10 random start-up trials, then TPE
    assert params(7, 11) == first
    assert params(8, 2) != first[:2]


def test_study_shares_the_state_store_and_other_processes_see_it(ws: Workspace) -> None:
    ws.state.migrate()  # the state store's tables first, then Optuna's beside them

    def space(trial: Any) -> dict[str, Any]:
        return {"x": trial.suggest_float("x", -4, 4), "label": "derived"}

    result = tune(ws.tracking, quadratic, space, n_trials=3, direction="maximize", seed=0)
    assert result.best_params["label"] == "derived"

    again = StateStore(ws.target.state_store_url)  # a fresh process's view of the store
    again.migrate()
    assert again.revision() == head_revision()
    tables = set(sa.inspect(again.engine).get_table_names())
    assert {"lakeforge_alembic_version", "alembic_version", "ingest_files", "trials"} <= tables
    again.dispose()

    script = (
        "import json, sys, optuna\n"
        "s = optuna.load_study(study_name=sys.argv[1], storage=sys.argv[2])\n"
        "print(json.dumps([[t.number, t.user_attrs['mlflow_run_id']] for t in s.trials]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, result.study_name, ws.target.state_store_url],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    seen = json.loads(out.stdout)
    assert seen == [[t.number, t.run_id] for t in result.trials]


def test_bad_intermediate_values_get_trials_pruned(ws: Workspace) -> None:
    def objective(params: dict[str, Any], trial: TrialHandle) -> float:
        loss = (params["x"] - 1.0) ** 2
        for step in range(3):
            trial.report(loss + 100.0 * (params["x"] > 1.5) + 1.0 / (step + 1), step)
        return loss

    space = {"x": {"type": "float", "low": 0.0, "high": 3.0}}
    result = tune(ws.tracking, objective, space, n_trials=14, direction="minimize", seed=3)

    pruned = [t for t in result.trials if t.state == "pruned"]
    assert len(pruned) > 0
    assert all(t.params["x"] > 1.5 for t in pruned)
    assert result.best_params["x"] <= 1.5 and result.best_value == min(
        t.value for t in result.trials if t.value is not None
    )
    mlflow = client(ws)
    run = mlflow.get_run(pruned[0].run_id)
    assert run.data.tags[TAG_STATE] == "pruned" and run.info.status == "FINISHED"
    history = mlflow.get_metric_history(pruned[0].run_id, "score")
    assert [m.step for m in history] == list(range(len(history))) and history
    assert client(ws).get_run(result.run_id).data.metrics["n_pruned"] == len(pruned)


def test_best_model_is_logged_unregistered_with_its_flavor(ws: Workspace) -> None:
    import mlflow.sklearn
    import numpy as np

    X = np.arange(40, dtype=float).reshape(20, 2)
    y = (X[:, 0] > 18).astype(int)

    def objective(params: dict[str, Any], trial: TrialHandle) -> tuple[float, Any]:
        model = LogisticRegression(C=params["C"]).fit(X, y)
        return float(model.score(X, y)), model

    space = {"C": {"type": "float", "low": 0.01, "high": 1.0}}
    result = tune(ws.tracking, objective, space, n_trials=2, seed=0, input_example=X[:2])
    with use_target(ws.target):
        loaded = mlflow.sklearn.load_model(result.model.model_uri)
    assert list(loaded.predict(X)) == list(result.best_model.predict(X))
    assert client(ws).search_registered_models() == []


def test_mistakes_get_clear_errors(ws: Workspace) -> None:
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    with pytest.raises(TuningError, match="needs a budget"):
        tune(ws.tracking, quadratic, space)
    with pytest.raises(TuningError, match="direction must be"):
        tune(ws.tracking, quadratic, space, n_trials=1, direction="up")  # type: ignore[arg-type]
    with pytest.raises(TuningError, match="pruner must be"):
        tune(ws.tracking, quadratic, space, n_trials=1, pruner="hyperband")  # type: ignore[arg-type]
    with pytest.raises(SignatureError, match="needs input_example"):
        tune(ws.tracking, quadratic, space, n_trials=1, register_as="dev.ml.m")
    with pytest.raises(TuningError, match="trial 0: the objective returned str"):
        tune(ws.tracking, lambda p, t: "high", space, n_trials=1)  # type: ignore[arg-type,return-value]
    with pytest.raises(TuningError, match=r"completed in this call \(0 pruned, 2 failed\)"):
        tune(ws.tracking, lambda p, t: float("nan"), space, n_trials=2)
    with pytest.raises(TuningError, match="in-memory SQLite"):
        tune(ws.tracking, quadratic, space, n_trials=1, storage="sqlite://")
    with pytest.raises(TuningError, match="not a SQLAlchemy URL"):
        tune(ws.tracking, quadratic, space, n_trials=1, storage="::nowhere::")
    tune(ws.tracking, quadratic, space, n_trials=1, study_name="s", direction="minimize")
    with pytest.raises(TuningError, match="exists with direction 'minimize', not 'maximize'"):
        tune(ws.tracking, quadratic, space, n_trials=1, study_name="s")


@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgres(project_dir: Path, pg_url: str) -> None:
    config_file = project_dir / "lakeforge.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["targets"]["dev"]["state_store"] = pg_url
    config_file.write_text(yaml.safe_dump(config))
    space = {"x": {"type": "float", "low": -5.0, "high": 5.0}}
    results = []
    for worker in range(2):  # two workers, each with its own connection to the target
        with lakeforge.connect("dev", project_dir=project_dir) as ws:
            assert ws.target.state_store_url == pg_url
            results.append(
                tune(ws.tracking, quadratic, space, n_trials=3, study_name="shared",
                     run_name=f"worker-{worker}")
            )  # fmt: skip
    first, second = results
    assert [t.number for t in first.trials] == [0, 1, 2]
    assert [t.number for t in second.trials] == [3, 4, 5]
    study = second.study
    assert len(study.trials) == 6
    run_ids = {t.user_attrs["mlflow_run_id"] for t in study.trials}
    assert run_ids == {t.run_id for r in results for t in r.trials}
    assert study.best_value == max(first.best_value, second.best_value)
    metrics = client(ws).get_run(second.run_id).data.metrics
    assert metrics["study_n_trials"] == 6 and metrics["n_trials"] == 3
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT study_name FROM studies")).scalars().all()
    engine.dispose()
    assert names == ["shared"]
