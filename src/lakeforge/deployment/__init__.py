"""Continuous deployment of models: validation, approval gates and the deployment step.

Names load on first use: listing approvals does not import the validation machinery
(pandas, MLflow's evaluation).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeforge.deployment._approvals import (
        ARCHIVED_TAG,
        ApprovalError,
        Approvals,
        AuditEntry,
        Request,
    )
    from lakeforge.deployment._checks import CheckResult
    from lakeforge.deployment._deploy import (
        Deployment,
        Rollback,
        deploy,
        outcome_line,
        rollback,
    )
    from lakeforge.deployment._validate import RESULTS_TABLE, ValidationReport, validate

_HOME = {
    "ARCHIVED_TAG": "_approvals",
    "ApprovalError": "_approvals",
    "Approvals": "_approvals",
    "AuditEntry": "_approvals",
    "Request": "_approvals",
    "CheckResult": "_checks",
    "Deployment": "_deploy",
    "Rollback": "_deploy",
    "deploy": "_deploy",
    "outcome_line": "_deploy",
    "rollback": "_deploy",
    "RESULTS_TABLE": "_validate",
    "ValidationReport": "_validate",
    "validate": "_validate",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeforge.deployment' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lakeforge.deployment.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ARCHIVED_TAG",
    "RESULTS_TABLE",
    "ApprovalError",
    "Approvals",
    "AuditEntry",
    "CheckResult",
    "Deployment",
    "Request",
    "Rollback",
    "ValidationReport",
    "deploy",
    "outcome_line",
    "rollback",
    "validate",
]
