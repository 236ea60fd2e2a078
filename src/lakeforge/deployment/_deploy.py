"""The deployment step: validate, request, (auto-)approve, set champion; and rollback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lakeforge.deployment._approvals import Request
from lakeforge.deployment._validate import ValidationReport, validate
from lakeforge.registry import CHALLENGER, CHAMPION, AliasEvent

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

Outcome = Literal["champion", "already_champion", "awaiting_approval", "blocked"]


@dataclass(frozen=True)
class Deployment:
    """Where a deployment stopped: the new champion, a pending request, or blocked.

    ``report`` is None when the version already was champion (nothing to validate);
    ``unapproved`` lists alias moves made in MLflow directly that this deployment found.
    """

    model: str
    version: int
    outcome: Outcome
    report: ValidationReport | None
    request: Request | None
    unapproved: tuple[AliasEvent, ...] = ()


@dataclass(frozen=True)
class Rollback:
    """A rollback: the alias moves made, or the request waiting for an approver."""

    model: str
    moves: tuple[AliasEvent, ...]
    request: Request | None


def deploy(
    ws: Workspace, name: str, version: int | str, *, reason: str | None = None
) -> Deployment:
    """validate -> request -> (auto-)approve -> champion, as the model's policy says.

    Aliases moved behind Lakeforge's back are recorded first (they are reported, and the
    champion compared with is the real one). The version is marked ``challenger``; a
    failed validation in ``enabled`` mode stops here; with ``approval: manual`` the
    request waits for ``approvals approve``.
    """
    mv = ws.models.version(name, version)
    model, number = mv.name, int(mv.version)
    unapproved = tuple(ws.models.check_drift(model))
    if ws.models.aliases(model).get(CHAMPION) == number:
        return Deployment(model, number, "already_champion", None, None, unapproved)
    ws.models.set_alias(model, CHALLENGER, number, reason=reason or "deployment candidate")
    report = validate(ws, model, number)
    if report.blocking:
        return Deployment(model, number, "blocked", report, None, unapproved)
    request = ws.approvals.request(model, number, report, reason=reason)
    if ws.models.policy(model).approval == "auto":
        request = ws.approvals.approve(request.id, comment="approval: auto policy", system=True)
        return Deployment(model, number, "champion", report, request, unapproved)
    return Deployment(model, number, "awaiting_approval", report, request, unapproved)


def rollback(ws: Workspace, name: str, *, reason: str | None = None) -> Rollback:
    """Return ``champion`` to ``previous``: directly, or on a gated target as a request
    (approved at once when the policy says ``rollback: auto``)."""
    model = ws.models.model_name(name)
    if not ws.models.policy(model).gated:
        return Rollback(model, tuple(ws.models.rollback(model, reason=reason)), None)
    request = ws.approvals.request_rollback(model, reason=reason)
    moves: tuple[AliasEvent, ...] = ()
    if request.status == "approved":
        moves = tuple(e for e in ws.models.history(model) if e.request_id == request.id)
    return Rollback(model, moves, request)


def outcome_line(result: Deployment, target: str) -> str:
    """What a deployment did, in words, with the command to run next on ``target``."""
    if result.outcome == "champion":
        return f"v{result.version} is now champion"
    if result.outcome == "already_champion":
        return f"v{result.version} is already champion; nothing to deploy"
    if result.outcome == "awaiting_approval" and result.request is not None:
        number = result.request.id
        return (
            f"awaiting approval: request #{number} "
            f"(an approver runs: lakeforge -t {target} approvals approve {number})"
        )
    failed = [] if result.report is None else result.report.failed_checks
    return f"blocked by validation: {', '.join(failed)}"
