"""The approval gate holds on every route that moves champion, with break-glass, drift
detection and per-model policies (dev in the cd project is gated: approval manual)."""

from __future__ import annotations

import getpass
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from lakeforge import Workspace
from lakeforge.bundle import plan, render
from lakeforge.cli import main
from lakeforge.errors import LakeforgeError, PermissionDeniedError
from lakeforge.registry import OUTSIDE_ACTOR, ApprovalGrant
from lakeforge.tasks import deploy_version
from tests.deployment.conftest import train, train_regressor

Run = Callable[..., str]


@pytest.fixture
def cli(cd_project: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(cd_project), *args])
        out = capsys.readouterr()
        text = out.out + out.err
        assert exit_info.value.code == code, text
        return text

    return run


def promote(ws: Workspace, monkeypatch: pytest.MonkeyPatch, name: str, approver: str) -> int:
    """Train a version as alice, deploy it and have ``approver`` approve it; its number."""
    monkeypatch.setenv("LAKEFORGE_USER", "alice")
    version = train(ws, name, tags={"team": "delays"})
    result = ws.deploy(name, version)
    assert result.request is not None, result.report
    monkeypatch.setenv("LAKEFORGE_USER", approver)
    ws.approvals.approve(result.request.id)
    return version


def test_every_route_that_moves_champion_is_refused_and_audited(
    cd_ws: Workspace, monkeypatch: pytest.MonkeyPatch, cli: Run
) -> None:
    name = "dev.ml.routes"
    first = promote(cd_ws, monkeypatch, name, "bob")
    second = promote(cd_ws, monkeypatch, name, "carol")
    before = cd_ws.models.aliases(name)
    assert before["champion"] == second and before["previous"] == first
    monkeypatch.setenv("LAKEFORGE_USER", "mallory")
    attempts = {
        "set_alias champion": lambda: cd_ws.models.set_alias(name, "champion", first),
        "set_alias previous": lambda: cd_ws.models.set_alias(name, "previous", second),
        "remove champion": lambda: cd_ws.models.remove_alias(name, "champion"),
        "rollback champion": lambda: cd_ws.models.rollback(name),
    }
    for attempt in attempts.values():
        with pytest.raises(PermissionDeniedError, match="gated in target 'dev'") as refused:
            attempt()
        assert "lakeforge -t dev " in str(refused.value)
    assert "lakeforge -t dev models rollback" in str(refused.value)
    # an approval grant is honored once, inside the decision that made it
    old_request = next(
        r.id for r in cd_ws.approvals.list(model=name, status="approved") if r.version == first
    )
    with pytest.raises(PermissionDeniedError, match="inside its decision's transaction"):
        cd_ws.models.set_alias(name, "champion", first, grant=ApprovalGrant(old_request))
    with (
        cd_ws.state.connect_engine().begin() as conn,
        pytest.raises(PermissionDeniedError, match=f"approval #{old_request} was already used"),
    ):
        cd_ws.models.set_alias(name, "champion", first, grant=ApprovalGrant(old_request), conn=conn)
    # the CLI: alias refused naming the commands; rollback becomes a request
    refused_cli = cli("models", "alias", name, "champion", str(first), code=1)
    assert (
        "gated in target 'dev'" in refused_cli and "lakeforge -t dev models deploy" in refused_cli
    )
    requested = cli("models", "rollback", name, "--reason", "latency")
    assert "rollback requested: request #" in requested
    request_id = int(requested.split("request #")[1].split()[0])
    assert f"lakeforge -t dev approvals approve {request_id}" in requested
    assert cd_ws.models.aliases(name) == before  # nothing moved
    audit = cd_ws.approvals.audit(name)
    refusals = [a for a in audit if a.outcome == "refused" and a.actor == "mallory"]
    assert {a.action for a in refusals} == {
        "set_alias champion",
        "set_alias previous",
        "remove champion",
        "rollback champion",
    }
    assert all(a.os_user == getpass.getuser() for a in refusals)
    # the rollback request is decided like any other; the history names it
    monkeypatch.setenv("LAKEFORGE_USER", "bob")
    assert "is now champion" in cli("approvals", "approve", str(request_id))
    assert cd_ws.models.aliases(name) == {**before, "champion": first, "previous": second}
    moved = [e for e in cd_ws.models.history(name) if e.request_id == request_id]
    assert {(e.alias, e.to_version, e.how) for e in moved} == {
        ("champion", first, "approval"),
        ("previous", second, "approval"),
    }
    assert "rollback approval #" in (moved[-1].reason or "")


def test_break_glass_moves_a_gated_champion_loudly_and_is_audited(
    cd_ws: Workspace, monkeypatch: pytest.MonkeyPatch, cli: Run, caplog: pytest.LogCaptureFixture
) -> None:
    name = "dev.ml.glass"
    first = promote(cd_ws, monkeypatch, name, "bob")
    second = promote(cd_ws, monkeypatch, name, "bob")
    monkeypatch.setenv("LAKEFORGE_USER", "dave")
    with pytest.raises(LakeforgeError, match="emergency move needs a reason"):
        cd_ws.models.set_alias(name, "champion", first, emergency=True)
    with caplog.at_level(logging.WARNING, logger="lakeforge.registry"):
        events = cd_ws.models.set_alias(
            name, "champion", first, emergency=True, reason="v2 returns NaN"
        )
    assert "EMERGENCY move of gated dev.ml.glass@champion" in caplog.text
    assert [(e.alias, e.how) for e in events] == [
        ("previous", "emergency"),
        ("champion", "emergency"),
    ]
    assert cd_ws.models.aliases(name)["champion"] == first
    emergencies = [a for a in cd_ws.approvals.audit(name) if a.action.startswith("emergency")]
    assert [(a.actor, a.action, a.detail) for a in emergencies][-1] == (
        "dave",
        "emergency champion",
        "v2 returns NaN",
    )
    [event] = [
        e
        for e in cd_ws.events.list(type="alias.moved", subject=name, limit=100)
        if e.payload["how"] == "emergency" and e.payload["alias"] == "champion"
    ]
    assert event.actor == "dave" and event.payload["to_version"] == first
    out = cli("models", "alias", name, "champion", str(second), "--emergency", "--reason", "fixed")
    assert "EMERGENCY" in out and f"champion: v{first} -> v{second}" in out
    history = cli("models", "history", name)
    assert "champion (EMERGENCY)" in history and "v2 returns NaN" in history
    if getpass.getuser() != "dave":
        assert f"dave (OS user {getpass.getuser()})" in " ".join(history.split())


def test_a_move_made_in_mlflow_directly_is_detected_and_recorded(
    cd_ws: Workspace, monkeypatch: pytest.MonkeyPatch, cli: Run
) -> None:
    name = "dev.ml.behind"
    first = promote(cd_ws, monkeypatch, name, "bob")
    monkeypatch.setenv("LAKEFORGE_USER", "alice")
    second = train(cd_ws, name, tags={"team": "delays"})
    MlflowClient(cd_ws.target.mlflow_tracking_uri).set_registered_model_alias(
        name, "champion", str(second)
    )
    history = cli("models", "history", name)
    assert "UNAPPROVED" in history and "outside Lakeforge" in history
    [event] = [e for e in cd_ws.models.history(name) if e.how == "outside"]
    assert (event.alias, event.from_version, event.to_version, event.actor) == (
        "champion",
        first,
        second,
        OUTSIDE_ACTOR,
    )
    outside = [
        e
        for e in cd_ws.events.list(type="alias.moved", subject=name)
        if e.payload["how"] == "outside"
    ]
    assert len(outside) == 1 and outside[0].actor == OUTSIDE_ACTOR
    assert cd_ws.models.check_drift(name) == []  # recorded once
    # `lakeforge deploy`'s report and `models deploy` find and report it too
    client = MlflowClient(cd_ws.target.mlflow_tracking_uri)
    client.set_registered_model_alias(name, "champion", str(first))
    report = render(plan(cd_ws))
    assert f"! unapproved alias move {name}@champion: v{second} -> v{first} " in "\n".join(report)
    client.set_registered_model_alias(name, "champion", str(second))
    deployed = cli("models", "deploy", name, str(second))
    assert "UNAPPROVED" in deployed and f"v{second} is already champion" in deployed


def test_redeploying_the_champion_says_so_and_the_task_log_lists_checks(
    cd_ws: Workspace,
    cd_project: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: Run,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = "dev.ml.again"
    version = promote(cd_ws, monkeypatch, name, "bob")
    out = cli("models", "deploy", name, str(version))
    assert f"{name} v{version} is already champion" in out and "is now champion" not in out
    monkeypatch.setenv("LAKEFORGE_USER", "alice")
    second = train(cd_ws, name, tags={"team": "delays"})
    result = deploy_version(name, second, project_dir=str(cd_project))
    log = capsys.readouterr().out
    assert result["outcome"] == "awaiting_approval"
    assert "pass signature: signature and input example logged" in log
    assert "pass description: has a description written by a person" in log
    assert f"lakeforge -t dev approvals approve {result['request_id']}" in log


def test_rollback_auto_policy_approves_the_rollback_request_at_once(
    cd_ws: Workspace, monkeypatch: pytest.MonkeyPatch, cli: Run
) -> None:
    name = "dev.ml.autoroll_one"
    first = promote(cd_ws, monkeypatch, name, "bob")
    second = promote(cd_ws, monkeypatch, name, "bob")
    assert cd_ws.models.policy(name).rollback_approval == "auto"
    out = cli("models", "rollback", name, "--reason", "alert")
    assert f"champion: v{second} -> v{first}" in out and "approved by lakeforge:auto" in out
    [request] = cd_ws.approvals.list(model=name, status="approved")[:1]
    assert request.kind == "rollback" and request.version == first


def test_a_classifier_and_a_regressor_deploy_under_their_own_policies(
    cd_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    classifier = promote(cd_ws, monkeypatch, "dev.ml.kind_classifier", "bob")
    assert cd_ws.models.aliases("dev.ml.kind_classifier")["champion"] == classifier
    regressor = train_regressor(cd_ws, "dev.ml.reg_delay")
    result = cd_ws.deploy("dev.ml.reg_delay", regressor)
    assert result.report is not None
    assert result.outcome == "champion", result.report.failed_checks
    assert result.report.policy == "targets.dev.deployment.models['dev.ml.reg_*']"
    assert "baseline:rmse:max_regression" in [r.check for r in result.report.results]
    default = cd_ws.validate("dev.ml.kind_classifier", classifier)
    assert default.policy.startswith("targets.dev.deployment (the target default")
    # without its rule the regressor would be held to the classifier's label and checks
    wrong = cd_ws.validate("dev.ml.reg_delay", regressor, policy=cd_ws.target.deployment.validation)
    assert not wrong.passed
