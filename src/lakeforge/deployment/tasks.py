"""Deployment steps as job tasks (``module:function`` with plain parameters).

Each opens the project on a target, does one step, and returns a JSON-friendly dict
(the task value downstream tasks can read).
"""

from __future__ import annotations

from typing import Any

from lakeforge._workspace import connect


def validate_version(
    model: str, version: int, *, target: str | None = None, project_dir: str | None = None
) -> dict[str, Any]:
    """Validate a version; raises when it fails in ``enabled`` mode."""
    from lakeforge.deployment._validate import validate
    from lakeforge.errors import LakeforgeError

    with connect(target, project_dir=project_dir) as ws:
        report = validate(ws, model, version)
    if report.blocking:
        raise LakeforgeError(
            f"{report.model} v{report.version} failed validation: {', '.join(report.failed_checks)}"
        )
    return report.summary()


def deploy_version(
    model: str, version: int, *, target: str | None = None, project_dir: str | None = None
) -> dict[str, Any]:
    """Run the deployment step; the outcome and the request id."""
    from lakeforge.deployment._deploy import deploy

    with connect(target, project_dir=project_dir) as ws:
        result = deploy(ws, model, version)
    return {
        "model": result.model,
        "version": result.version,
        "outcome": result.outcome,
        "request_id": result.request.id if result.request else None,
        "failed_checks": result.report.failed_checks,
    }


def rollback(
    model: str,
    *,
    target: str | None = None,
    project_dir: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Move champion back to previous."""
    with connect(target, project_dir=project_dir) as ws:
        events = ws.models.rollback(model, reason=reason)
    return {"moves": [(e.alias, e.from_version, e.to_version) for e in events]}
