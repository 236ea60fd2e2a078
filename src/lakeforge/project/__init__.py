"""Projects, their ``lakeforge.yaml`` and the dev/staging/prod targets it declares."""

from lakeforge.project._config import PROJECT_FILE, ProjectConfig, TargetConfig, parse_config
from lakeforge.project._init import init_project
from lakeforge.project._project import TARGET_ENV, Project, Target

__all__ = [
    "PROJECT_FILE",
    "TARGET_ENV",
    "Project",
    "ProjectConfig",
    "Target",
    "TargetConfig",
    "init_project",
    "parse_config",
]
