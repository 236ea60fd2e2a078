"""Deploying a project's declared resources (tables, jobs) to a target: ``lakeforge deploy``."""

from lakeforge.bundle._deploy import (
    Change,
    DeployError,
    Drift,
    Plan,
    apply,
    canonical_json,
    deploy,
    deployed_jobs,
    deployed_name,
    plan,
    render,
    spec_hash,
    summary,
)

__all__ = [
    "Change",
    "DeployError",
    "Drift",
    "Plan",
    "apply",
    "canonical_json",
    "deploy",
    "deployed_jobs",
    "deployed_name",
    "plan",
    "render",
    "spec_hash",
    "summary",
]
