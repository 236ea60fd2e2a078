"""Continuous deployment of models: validation, approval gates and the deployment step.

Names load on first use: listing approvals does not import the validation machinery
(pandas, MLflow's evaluation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

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


__getattr__ = lazy_names(__name__, _HOME)


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
