"""Projects, their ``lakeforge.yaml`` and every spec it declares: the one definitions layer.

Targets, deployment policies, tables, jobs, serving endpoints, webhooks and event types
are typed models here, on one strict base; the runtime packages (serving, events, jobs,
bundle) import them, never the reverse.
"""

from lakeforge.project._base import Strict
from lakeforge.project._config import (
    PROJECT_FILE,
    ProjectConfig,
    TargetConfig,
    check_name,
    parse_config,
)
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
from lakeforge.project._init import init_project, start_git
from lakeforge.project._jobs import (
    CronSchedule,
    FileArrivalTrigger,
    JobFinishedTrigger,
    JobSpec,
    ModelEventTrigger,
    MonitorAlertTrigger,
    RegistryEvent,
    RunIf,
    TableSpec,
    TableUpdateTrigger,
    TaskSpec,
    Trigger,
)
from lakeforge.project._policy import (
    Approval,
    Bounds,
    ChampionComparison,
    Checks,
    DeploymentPolicy,
    EffectivePolicy,
    PolicyRule,
    Relative,
    ValidationPolicy,
)
from lakeforge.project._policy import Mode as ValidationMode
from lakeforge.project._project import PROJECT_DIR_ENV, TARGET_ENV, Project, Target
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
    "PROJECT_DIR_ENV",
    "PROJECT_FILE",
    "TARGET_ENV",
    "VALIDATION_FAILED",
    "VALIDATION_PASSED",
    "Approval",
    "AuthSpec",
    "Bounds",
    "ChampionComparison",
    "Checks",
    "CronSchedule",
    "DeploymentPolicy",
    "EffectivePolicy",
    "EndpointSpec",
    "EntitySpec",
    "EventError",
    "FileArrivalTrigger",
    "InferenceTableSpec",
    "JobFinishedTrigger",
    "JobSpec",
    "ModelEventTrigger",
    "MonitorAlertTrigger",
    "PolicyRule",
    "Project",
    "ProjectConfig",
    "RegistryEvent",
    "Relative",
    "RunIf",
    "ServedEntitySpec",
    "Strict",
    "TableSpec",
    "TableUpdateTrigger",
    "Target",
    "TargetConfig",
    "TaskSpec",
    "Trigger",
    "ValidationMode",
    "ValidationPolicy",
    "WebhookConfig",
    "check_name",
    "check_patterns",
    "check_type",
    "init_project",
    "matches",
    "parse_config",
    "start_git",
]
