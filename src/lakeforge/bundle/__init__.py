"""``lakeforge deploy``: a target gets the project's declared resources (tables, jobs,
endpoints) and a snapshot of its code at its commit, which the target's jobs and servers
run."""

from lakeforge.bundle._deploy import (
    Change,
    CodeChange,
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
from lakeforge.bundle._errors import DeployError
from lakeforge.bundle._serving import ServedSpecs, served_endpoints
from lakeforge.bundle._snapshot import Deployment
from lakeforge.bundle._snapshot import current as current_deployment
from lakeforge.bundle._snapshot import get as get_deployment

__all__ = [
    "Change",
    "CodeChange",
    "DeployError",
    "Deployment",
    "Drift",
    "Plan",
    "apply",
    "canonical_json",
    "deploy",
    "current_deployment",
    "deployed_jobs",
    "deployed_name",
    "get_deployment",
    "plan",
    "render",
    "served_endpoints",
    "ServedSpecs",
    "spec_hash",
    "summary",
]
