"""Job tasks the platform ships: deployment steps (``lakeforge.tasks:deploy_version`` ...).

Like the CLI, this is a shell over the SDK, above the Workspace: the jobs engine calls
these by ``module:function`` with plain parameters.

Each opens the project on a target, does one step, and returns a JSON-friendly dict
(the task value downstream tasks can read).
"""

from __future__ import annotations

from typing import Any

from lakeforge._workspace import connect
from lakeforge.deployment import outcome_line


def validate_version(
    model: str, version: int, *, target: str | None = None, project_dir: str | None = None
) -> dict[str, Any]:
    """Validate a version; raises when it fails in ``enabled`` mode."""
    from lakeforge.deployment import validate
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
    """Run the deployment step, printing each check's result (the task log); the outcome
    and the request id."""
    from lakeforge.deployment import deploy

    with connect(target, project_dir=project_dir) as ws:
        result = deploy(ws, model, version)
        target_name = ws.target.name
    for event in result.unapproved:
        print(
            f"UNAPPROVED: {event.model}@{event.alias} was moved outside Lakeforge "
            f"(v{event.from_version} -> v{event.to_version})",
            flush=True,
        )
    report = result.report
    if report is not None:
        print(f"validation {report.validation_id} ({report.mode}), policy {report.policy}")
        for check in report.results:
            mark = "pass" if check.passed else "FAIL"
            rule = f" [{check.threshold}]" if check.threshold else ""
            print(f"  {mark} {check.check}: {check.message}{rule}")
    print(f"{result.model} v{result.version}: {outcome_line(result, target_name)}", flush=True)
    return {
        "model": result.model,
        "version": result.version,
        "outcome": result.outcome,
        "request_id": result.request.id if result.request else None,
        "failed_checks": [] if report is None else report.failed_checks,
    }


def rollback(
    model: str,
    *,
    target: str | None = None,
    project_dir: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Move champion back to previous (on a gated target: a rollback request)."""
    from lakeforge.deployment import rollback as roll_back

    with connect(target, project_dir=project_dir) as ws:
        result = roll_back(ws, model, reason=reason)
    return {
        "moves": [(e.alias, e.from_version, e.to_version) for e in result.moves],
        "request_id": None if result.request is None else result.request.id,
    }
