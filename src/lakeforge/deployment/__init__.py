"""Continuous deployment of models: validation, approval gates and the deployment step."""

from lakeforge.deployment._approvals import (
    ARCHIVED_TAG,
    ApprovalError,
    Approvals,
    AuditEntry,
    Request,
)
from lakeforge.deployment._checks import CheckResult
from lakeforge.deployment._deploy import Deployment, Rollback, deploy, outcome_line, rollback
from lakeforge.deployment._validate import RESULTS_TABLE, ValidationReport, validate

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
