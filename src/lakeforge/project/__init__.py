"""Projects, their ``lakeforge.yaml`` and every spec it declares: the one definitions layer.

Targets, deployment policies, tables, jobs, serving endpoints, webhooks and event types
are typed models here, on one strict base; the runtime packages (serving, events, jobs,
bundle) import them, never the reverse.
"""

from lakeforge.project._base import Strict
from lakeforge.project._config import PROJECT_FILE, ProjectConfig, TargetConfig, parse_config
from lakeforge.project._endpoints import (
    AuthSpec,
    EndpointSpec,
    EntitySpec,
    InferenceTableSpec,
    ServedEntitySpec,
)
from lakeforge.project._events import (
    ALIAS_MOVED,
    APPROVAL_DECIDED,
    APPROVAL_REQUESTED,
    EVENT_TYPES,
    JOB_FINISHED,
    MODEL_VERSION_CREATED,
    MODEL_VERSION_DELETED,
    MONITOR_ALERT,
    VALIDATION_FAILED,
    VALIDATION_PASSED,
    EventError,
    check_patterns,
    check_type,
    matches,
)
from lakeforge.project._init import init_project
from lakeforge.project._jobs import JobSpec, TableSpec
from lakeforge.project._policy import DeploymentPolicy
from lakeforge.project._project import TARGET_ENV, Project, Target
from lakeforge.project._webhooks import WebhookConfig

__all__ = [
    "ALIAS_MOVED",
    "APPROVAL_DECIDED",
    "APPROVAL_REQUESTED",
    "EVENT_TYPES",
    "JOB_FINISHED",
    "MODEL_VERSION_CREATED",
    "MODEL_VERSION_DELETED",
    "MONITOR_ALERT",
    "PROJECT_FILE",
    "TARGET_ENV",
    "VALIDATION_FAILED",
    "VALIDATION_PASSED",
    "AuthSpec",
    "DeploymentPolicy",
    "EndpointSpec",
    "EntitySpec",
    "EventError",
    "InferenceTableSpec",
    "JobSpec",
    "Project",
    "ProjectConfig",
    "ServedEntitySpec",
    "Strict",
    "TableSpec",
    "Target",
    "TargetConfig",
    "WebhookConfig",
    "check_patterns",
    "check_type",
    "init_project",
    "matches",
    "parse_config",
]
