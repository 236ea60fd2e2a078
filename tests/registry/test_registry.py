"""The registry: aliases with promotion history, rollback, lineage and copies across targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import lakeforge
from lakeforge import Workspace
from lakeforge.cli import main
from lakeforge.errors import LakeforgeError, PermissionDeniedError
from lakeforge.registry import ModelNotFoundError
from lakeforge.tracking import use_target

X = pd.DataFrame({"dep_delay": [0.0, 5.0, 30.0, 90.0], "distance": [200.0, 500.0, 1000.0, 2000.0]})
Y = [0, 0, 1, 1]


def register(ws: Workspace, name: str, count: int) -> None:
    for c in range(count):
        with ws.start_run("train", autolog=False):
            ws.tables.read("dev.silver.flights", columns=["dep_delay"])
            ws.log_model(LogisticRegression(C=1.0 + c).fit(X, Y), name, input_example=X.head(2))


@pytest.fixture
def model(ml_ws: Workspace, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"dev.ml.{request.node.name.split('[')[0][5:40]}"
    register(ml_ws, name, 3)
    yield name


def test_champion_moves_make_previous_and_history_records_everything(
    ml_ws: Workspace, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEFORGE_USER", "ada")
    ml_ws.models.set_alias(model, "challenger", 1, reason="candidate")
    ml_ws.models.set_alias(model, "champion", 1, reason="first release")
    monkeypatch.setenv("LAKEFORGE_USER", "alan")
    events = ml_ws.models.set_alias(model, "champion", 2, reason="better recall")
    assert [(e.alias, e.from_version, e.to_version) for e in events] == [
        ("previous", None, 1),
        ("champion", 1, 2),
    ]
    assert ml_ws.models.aliases(model) == {"challenger": 1, "champion": 2, "previous": 1}
    assert ml_ws.models.resolve(f"{model}@champion").version == 2
    history = ml_ws.models.history(model)
    assert [(e.alias, e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
        ("challenger", None, 1, "ada", "candidate"),
        ("champion", None, 1, "ada", "first release"),
        ("previous", None, 1, "alan", "better recall"),
        ("champion", 1, 2, "alan", "better recall"),
    ]
    assert all(e.at.tzinfo is not None for e in history)
    assert ml_ws.models.set_alias(model, "champion", 2) == []  # no move, nothing recorded
    rolled = ml_ws.models.rollback(model, reason="latency regression")
    assert [(e.alias, e.from_version, e.to_version) for e in rolled] == [
        ("champion", 2, 1),
        ("previous", 1, 2),
    ]
    assert ml_ws.models.aliases(model)["champion"] == 1
    assert len(ml_ws.models.history(model)) == 6
    removed = ml_ws.models.remove_alias(model, "challenger", reason="done")
    assert removed.to_version is None and "challenger" not in ml_ws.models.aliases(model)


def test_bad_references_get_clear_errors(ml_ws: Workspace, model: str) -> None:
    with pytest.raises(ModelNotFoundError, match=r"has no version 9 \(versions: 1, 2, 3\)"):
        ml_ws.models.set_alias(model, "champion", 9)
    with pytest.raises(ModelNotFoundError, match="dev.ml.nope is not registered") as info:
        ml_ws.models.versions("dev.ml.nope")
    with pytest.raises(ModelNotFoundError, match="did you mean"):
        ml_ws.models.versions(model[:-1])
    assert "hint" in str(info.value)
    with pytest.raises(ModelNotFoundError, match="has no alias 'champion'"):
        ml_ws.models.resolve(f"{model}@champion")
    with pytest.raises(LakeforgeError, match="no 'previous' version"):
        ml_ws.models.rollback(model)
    with pytest.raises(LakeforgeError, match="not NAME/VERSION or NAME@ALIAS"):
        ml_ws.models.resolve(model)
    with pytest.raises(LakeforgeError, match="alias 'Bad Alias' is not valid"):
        ml_ws.models.set_alias(model, "Bad Alias", 1)


def test_versions_listing_and_lineage(ml_ws: Workspace, model: str) -> None:
    versions = ml_ws.models.versions(model)
    assert [int(v.version) for v in versions] == [3, 2, 1]
    lineage = ml_ws.models.lineage(f"{model}/2")
    assert lineage.commit and lineage.data_versions == {"dev.silver.flights": 0}
    assert model in [m.name for m in ml_ws.models.list()]


def test_copy_dev_to_staging_across_separate_stores(
    ml_ws: Workspace, ml_project: Path, model: str
) -> None:
    staging = lakeforge.connect("staging", project_dir=ml_project)
    assert staging.target.mlflow_tracking_uri != ml_ws.target.mlflow_tracking_uri
    copied = ml_ws.models.copy(f"{model}/2", to="staging", reason="release 1")
    staged = model.replace("dev.", "staging.", 1)
    assert copied.name == staged and int(copied.version) == 1
    assert copied.tags["lakeforge.copied_from"] == f"{model}/2"
    source = ml_ws.models.version(model, 2)
    assert copied.tags["lakeforge.git.commit"] == source.tags["lakeforge.git.commit"]
    assert copied.tags["lakeforge.data_versions"] == source.tags["lakeforge.data_versions"]
    assert "Copied from" in copied.description and "release 1" in copied.description
    lineage = staging.models.lineage(f"{staged}/1")
    assert lineage.copied_from == f"{model}/2" and lineage.data_versions == {
        "dev.silver.flights": 0
    }
    with use_target(staging.target):
        loaded = mlflow.pyfunc.load_model(f"models:/{staged}/1")
    with use_target(ml_ws.target):
        original = mlflow.pyfunc.load_model(f"models:/{model}/2")
    assert list(loaded.predict(X)) == list(original.predict(X))
    # copying by alias works too, and each copy is a new version
    ml_ws.models.set_alias(model, "champion", 3)
    again = ml_ws.models.copy(f"{model}@champion", to="staging")
    assert int(again.version) == 2 and again.tags["lakeforge.copied_from"] == f"{model}/3"


def test_copy_into_a_target_that_does_not_accept_it_is_refused(
    ml_ws: Workspace, model: str
) -> None:
    with pytest.raises(
        PermissionDeniedError, match="target 'prod' does not accept model copies from 'dev'"
    ):
        ml_ws.models.copy(f"{model}/1", to="prod")
    with pytest.raises(LakeforgeError, match="unknown target 'qa'"):
        ml_ws.models.copy(f"{model}/1", to="qa")


def test_models_cli(
    ml_ws: Workspace, ml_project: Path, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(ml_project), *args])
        out = capsys.readouterr()
        assert exit_info.value.code == code, out.err
        return out.out + out.err

    assert model in run("models", "list")
    assert "dev.silver.flights" in run("models", "versions", model)
    assert "read: dev.silver.flights@v0" in run("models", "lineage", f"{model}/1")
    assert "champion: none -> v1" in run(
        "models", "alias", model, "champion", "1", "--reason", "go"
    )
    assert "champion: v1 -> v2" in run("models", "alias", model, "champion", "2")
    assert "champion: v2 -> v1" in run("models", "rollback", model)
    history = run("models", "history", model)
    assert "go" in history and history.count("champion") == 3
    assert "copied" in run("models", "copy", f"{model}/1", "--to", "staging")
    assert "has no version 7" in run("models", "alias", model, "champion", "7", code=1)
    assert "does not accept model copies" in run(
        "models", "copy", f"{model}/1", "--to", "prod", code=1
    )


def test_delete_version_refuses_aliased_versions_and_emits_an_event(
    ml_ws: Workspace, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ml_ws.models.set_alias(model, "champion", 2)
    with pytest.raises(LakeforgeError, match=r"cannot delete .* v2: alias\(es\) champion"):
        ml_ws.models.delete_version(model, 2)
    ml_ws.models.delete_version(model, 1, reason="never used")
    assert [int(v.version) for v in ml_ws.models.versions(model)] == [3, 2]
    deleted = ml_ws.events.list(type="model_version.deleted", subject=model)
    assert [(e.payload["version"], e.payload["reason"]) for e in deleted] == [(1, "never used")]
    # the CLI asks first, and takes the two-part name in the current target
    short = model.removeprefix("dev.")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "--project-dir",
                str(ml_ws.project.directory),
                "models",
                "delete-version",
                short,
                "3",
                "--yes",
            ]
        )
    assert exit_info.value.code == 0 and f"deleted {model} v3" in capsys.readouterr().out
    with pytest.raises(ModelNotFoundError, match="has no version 3"):
        ml_ws.models.version(model, 3)


def test_model_name_errors_speak_of_models(ml_ws: Workspace) -> None:
    with pytest.raises(
        LakeforgeError, match=r"model name 'species' must have three parts.*dev\.ml\."
    ):
        ml_ws.models.versions("species")
    with (
        pytest.raises(LakeforgeError, match="model name 'species'"),
        ml_ws.start_run("train", autolog=False),
    ):
        ml_ws.log_model(LogisticRegression().fit(X, Y), "species", input_example=X.head(2))
