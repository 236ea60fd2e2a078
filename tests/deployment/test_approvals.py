"""The approval gate and the deployment step, with promotion history and events."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.cli import main
from lakeforge.deployment import ARCHIVED_TAG, ApprovalError
from lakeforge.errors import PermissionDeniedError
from lakeforge.tasks import deploy_version
from tests.deployment.conftest import train


def test_manual_policy_waits_for_an_allowed_approver(
    cd_ws: Workspace, cd_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "dev.ml.gate"
    first = train(cd_ws, name, tags={"team": "delays"})
    result = cd_ws.deploy(name, first)
    assert result.outcome == "awaiting_approval" and result.request is not None
    request = result.request
    assert request.requested_by == "alice" and request.validation["passed"] is True
    assert cd_ws.models.aliases(name) == {"challenger": first}  # only approval moves champion
    # the requester may not approve her own request; a stranger may not either
    with pytest.raises(PermissionDeniedError, match="separation of duties"):
        cd_ws.approvals.approve(request.id)
    monkeypatch.setenv("LAKEFORGE_USER", "mallory")
    with pytest.raises(PermissionDeniedError, match=r"'mallory' may not decide.*alice, bob, carol"):
        cd_ws.approvals.approve(request.id)
    monkeypatch.setenv("LAKEFORGE_USER", "bob")  # in group ml-leads
    approved = cd_ws.approvals.approve(request.id, comment="looks good")
    assert approved.status == "approved" and approved.decided_by == "bob"
    assert cd_ws.models.aliases(name)["champion"] == first
    with pytest.raises(ApprovalError, match="already approved by bob"):
        cd_ws.approvals.approve(request.id)
    # a second, better-or-equal version replaces it; the old champion becomes previous
    monkeypatch.setenv("LAKEFORGE_USER", "alice")
    second = train(cd_ws, name, tags={"team": "delays"})
    pending = cd_ws.deploy(name, second)
    assert pending.outcome == "awaiting_approval" and pending.request is not None
    monkeypatch.setenv("LAKEFORGE_USER", "carol")
    cd_ws.approvals.approve(pending.request.id)
    assert cd_ws.models.aliases(name) == {
        "challenger": second,
        "champion": second,
        "previous": first,
    }
    audit = [(a.actor, a.action, a.outcome) for a in cd_ws.approvals.audit(name)]
    assert ("alice", "approve", "refused") in audit and ("mallory", "approve", "refused") in audit
    assert ("bob", "approve", "done") in audit and ("carol", "approve", "done") in audit
    types = [e.type for e in cd_ws.events.list(subject=name, limit=100)]
    assert types.count("approval.requested") == 2 and types.count("approval.decided") == 2
    assert "model_version.created" in types and "alias.moved" in types


def test_a_worse_version_fails_champion_vs_challenger_and_is_not_promoted(
    cd_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "dev.ml.worse"
    good = train(cd_ws, name, tags={"team": "delays"})
    request = cd_ws.deploy(name, good).request
    assert request is not None
    monkeypatch.setenv("LAKEFORGE_USER", "bob")
    cd_ws.approvals.approve(request.id)
    bad = train(cd_ws, name, quality="bad", tags={"team": "delays"})
    result = cd_ws.deploy(name, bad)
    assert result.outcome == "blocked" and result.request is None
    assert "champion:roc_auc:max_regression" in result.report.failed_checks
    regression = next(
        r for r in result.report.results if r.check == "champion:roc_auc:max_regression"
    )
    assert regression.value is not None and regression.value < -0.02
    assert cd_ws.models.aliases(name)["champion"] == good


def test_reject_archives_the_version(cd_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "dev.ml.rejected"
    version = train(cd_ws, name, tags={"team": "delays"})
    request = cd_ws.approvals.request(name, version)
    assert cd_ws.approvals.request(name, version).id == request.id  # one open request per version
    monkeypatch.setenv("LAKEFORGE_USER", "carol")
    rejected = cd_ws.approvals.reject(request.id, comment="not now")
    assert rejected.status == "rejected"
    assert cd_ws.models.version(name, version).tags[ARCHIVED_TAG] == "true"
    assert "champion" not in cd_ws.models.aliases(name)
    with pytest.raises(ApprovalError, match="already rejected"):
        cd_ws.approvals.approve(request.id)
    with pytest.raises(ApprovalError, match="no approval request #9999"):
        cd_ws.approvals.approve(9999)


def race(project: Path, name: str, request_id: int) -> dict[str, str]:
    """Approve and reject one request at the same moment from two workspaces."""
    outcomes: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def decide(decision: str) -> None:
        with lakeforge.connect("dev", project_dir=project) as ws:
            ws.approvals.get(request_id)  # connections open before the race
            barrier.wait()
            try:
                if decision == "approve":
                    ws.approvals.approve(request_id, comment=decision)
                else:
                    ws.approvals.reject(request_id, comment=decision)
                outcomes[decision] = "won"
            except ApprovalError as exc:
                outcomes[decision] = str(exc)

    threads = [threading.Thread(target=decide, args=(d,)) for d in ("approve", "reject")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def check_one_decision(ws: Workspace, name: str, request_id: int, outcomes: dict[str, str]) -> None:
    assert sorted(o == "won" for o in outcomes.values()) == [False, True], outcomes
    loser = next(o for o in outcomes.values() if o != "won")
    assert "cannot be decided twice" in loser
    winner = next(d for d, o in outcomes.items() if o == "won")
    assert (
        ws.approvals.get(request_id).status == {"approve": "approved", "reject": "rejected"}[winner]
    )
    done = [a for a in ws.approvals.audit(name) if a.outcome == "done" and a.action != "request"]
    assert [a.action for a in done] == [winner]


def test_two_approvers_racing_produce_exactly_one_decision(
    cd_ws: Workspace, cd_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "dev.ml.race"
    version = train(cd_ws, name, tags={"team": "delays"})
    request = cd_ws.approvals.request(name, version)
    monkeypatch.setenv("LAKEFORGE_USER", "bob")
    check_one_decision(cd_ws, name, request.id, race(cd_project, name, request.id))


@pytest.mark.postgres
def test_racing_approvers_on_the_postgres_state_store(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "pg"
    folder.mkdir()
    (folder / "lakeforge.yaml").write_text(
        f"name: pgcd\ntargets:\n  dev:\n    state_store: {pg_url}\n"
        "    deployment: {approval: manual, approvers: [bob], validation: {mode: disabled}}\n"
    )
    monkeypatch.setenv("LAKEFORGE_USER", "bob")
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.tables.write("dev.silver.flights", cd_ws_flights())
        version = train(ws, "dev.ml.pgrace")
        request = ws.approvals.request("dev.ml.pgrace", version)
        check_one_decision(
            ws, "dev.ml.pgrace", request.id, race(folder, "dev.ml.pgrace", request.id)
        )


def cd_ws_flights() -> Any:
    from lakeforge.demo import load_flights

    return load_flights().slice(0, 5_000)


def test_auto_policy_promotes_after_validation_and_tasks_work(
    cd_ws: Workspace, cd_project: Path
) -> None:
    name = "dev.ml.auto"
    version = train(cd_ws, name, tags={"team": "delays"})
    copied = cd_ws.models.copy(f"{name}/{version}", to="staging")
    outcome = deploy_version(
        "staging.ml.auto", int(copied.version), target="staging", project_dir=str(cd_project)
    )
    assert outcome["outcome"] == "champion" and outcome["failed_checks"] == []
    with lakeforge.connect("staging", project_dir=cd_project) as staging:
        assert staging.models.aliases("staging.ml.auto")["champion"] == int(copied.version)
        [decision] = [
            a for a in staging.approvals.audit("staging.ml.auto") if a.action == "approve"
        ]
        assert decision.actor == "lakeforge:auto-approval"
        assert [e.type for e in staging.events.list(subject="staging.ml.auto")][
            0
        ] == "model_version.created"


def test_cli_validate_deploy_approvals_history_and_events(
    cd_ws: Workspace,
    cd_project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def run(*args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(cd_project), *args])
        out = capsys.readouterr()
        assert exit_info.value.code == code, out.out + out.err
        return out.out + out.err

    name = "dev.ml.cli"
    version = train(cd_ws, name, tags={"team": "delays"})
    assert "PASSED" in run("models", "validate", name, str(version))
    deployed = run("models", "deploy", name, str(version))
    assert "awaiting approval: request #" in deployed
    request_id = deployed.split("request #")[1].split()[0]
    assert name in run("approvals", "list", "--status", "pending")
    assert "separation of duties" in run("approvals", "approve", request_id, code=1)
    monkeypatch.setenv("LAKEFORGE_USER", "bob")
    assert "is now champion" in run("approvals", "approve", request_id, "--comment", "ship it")
    assert "already approved" in run("approvals", "reject", request_id, code=1)
    history = run("models", "history", name)
    assert f"approve #{request_id}" in history and "ship it" in history and "champion" in history
    events = run("events", "list", "--subject", name)
    assert "approval.decided" in events and "alias.moved" in events
    assert "unknown field (allowed: " not in run(
        "models", "validate", name, str(version), "--mode", "dry_run"
    )
