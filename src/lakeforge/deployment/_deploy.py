"""The deployment step: validate, request, (auto-)approve, set champion; and job tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from lakeforge.deployment._approvals import Request
from lakeforge.deployment._validate import ValidationReport, validate
from lakeforge.registry import CHALLENGER

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

Outcome = Literal["champion", "awaiting_approval", "blocked"]


@dataclass(frozen=True)
class Deployment:
    """Where a deployment stopped: the new champion, a pending request, or blocked."""

    model: str
    version: int
    outcome: Outcome
    report: ValidationReport
    request: Request | None


def deploy(
    ws: Workspace, name: str, version: int | str, *, reason: str | None = None
) -> Deployment:
    """validate -> request -> (auto-)approve -> champion, as the target's policy says.

    The version is marked ``challenger`` first. A failed validation in ``enabled`` mode
    stops here; with ``approval: manual`` the request waits for ``approvals approve``.
    """
    mv = ws.models.version(name, version)
    model, number = mv.name, int(mv.version)
    ws.models.set_alias(model, CHALLENGER, number, reason=reason or "deployment candidate")
    report = validate(ws, model, number)
    if report.blocking:
        return Deployment(model, number, "blocked", report, None)
    request = ws.approvals.request(model, number, report)
    if ws.target.deployment.approval == "auto":
        request = ws.approvals.approve(request.id, comment="approval: auto policy", system=True)
        return Deployment(model, number, "champion", report, request)
    return Deployment(model, number, "awaiting_approval", report, request)
