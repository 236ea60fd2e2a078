"""The project file ``lakeforge.yaml``: its pydantic model, loading and error reporting."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from lakeforge.errors import ConfigError
from lakeforge.project._base import Strict
from lakeforge.project._endpoints import EndpointSpec
from lakeforge.project._jobs import JobSpec, TableSpec, TaskSpec
from lakeforge.project._llm import LLMEndpointSpec
from lakeforge.project._monitor_alerts import SmtpConfig
from lakeforge.project._monitors import MonitorSpec
from lakeforge.project._policy import DeploymentPolicy
from lakeforge.project._vectors import VectorIndexSpec, check_index_name
from lakeforge.project._webhooks import SECRET_SOURCES, WebhookConfig

PROJECT_FILE = "lakeforge.yaml"
MONITOR_JOB_PREFIX = "monitor_"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def check_name(value: str, what: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not valid: use lowercase letters, digits and '_', "
            "starting with a letter (at most 63 characters)"
        )
    return value


class TargetConfig(Strict):
    """One deployment target (``dev``, ``staging``, ``prod``, ...).

    Every field but ``root`` has a default derived from the target's name and root.
    """

    root: str | None = Field(
        default=None,
        description="Storage root: a local path (relative to the project) or an object-store URI.",
    )
    catalog: str | None = Field(
        default=None, description="Catalog name; defaults to the target name."
    )
    mlflow_tracking_uri: str | None = None
    mlflow_artifact_root: str | None = Field(
        default=None,
        description="Where new experiments keep artifacts; default <root>/mlartifacts.",
    )
    state_store: str | None = Field(default=None, description="SQLAlchemy URL of the state store.")
    read_from: list[str] = Field(default_factory=list)
    promote_from: list[str] = Field(
        default_factory=list,
        description="Targets whose model versions may be copied into this one (deploy-models).",
    )
    storage_options: dict[str, str] = Field(default_factory=dict)
    deployment: DeploymentPolicy = Field(default_factory=DeploymentPolicy)
    online_store: str | None = Field(
        default=None,
        description="Online feature store URI: sqlite:///path (default, under the root) or "
        "redis://host:6379/0.",
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster for jobs with executor: ray (default: a local one)."
    )
    mode: Literal["development", "production"] | None = Field(
        default=None,
        description="development: schedules paused and job names prefixed with the user "
        "on deploy (default for a target named dev); production otherwise.",
    )

    @field_validator("catalog")
    @classmethod
    def _catalog_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "catalog")


# The dev -> staging -> prod conventions, applied to a target that leaves the field out.
_CONVENTIONAL_LINKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dev": ("read_from", ("prod",)),
    "staging": ("promote_from", ("dev",)),
    "prod": ("promote_from", ("staging",)),
}


class ProjectConfig(Strict):
    """The validated content of ``lakeforge.yaml``."""

    name: str
    default_target: str = "dev"
    targets: dict[str, TargetConfig] = Field(
        default_factory=lambda: {
            "dev": TargetConfig(),
            "staging": TargetConfig(),
            "prod": TargetConfig(),
        }
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="Named groups of users, for approvers: group:NAME."
    )
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    smtp: SmtpConfig | None = Field(
        default=None, description="The mail server monitor alerts with an email channel use."
    )
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    tables: dict[str, TableSpec] = Field(
        default_factory=dict, description="Tables `lakeforge deploy` creates: schema.table -> spec."
    )
    endpoints: dict[str, EndpointSpec] = Field(
        default_factory=dict, description="Serving endpoints `lakeforge serve` runs: name -> spec."
    )
    monitors: dict[str, MonitorSpec] = Field(
        default_factory=dict, description="Table monitors `lakeforge monitor refresh` runs."
    )
    llm_endpoints: dict[str, LLMEndpointSpec] = Field(
        default_factory=dict,
        description="LLM gateway endpoints `lakeforge serve` runs (OpenAI-compatible): name -> spec.",
    )
    vector_indexes: dict[str, VectorIndexSpec] = Field(
        default_factory=dict,
        description="Vector indexes synced from Delta tables (lakeforge vectors): schema.name -> spec.",
    )

    @field_validator("vector_indexes")
    @classmethod
    def _vector_index_names(cls, value: dict[str, VectorIndexSpec]) -> dict[str, VectorIndexSpec]:
        for name, spec in value.items():
            check_index_name(name)
            if spec.name and spec.name != name:
                raise ValueError(f"vector index {name!r} says name: {spec.name!r}; leave name out")
            spec.name = name
        return value

    @field_validator("monitors")
    @classmethod
    def _monitor_names(cls, value: dict[str, MonitorSpec]) -> dict[str, MonitorSpec]:
        for name, spec in value.items():
            check_name(name, "monitor name")
            if spec.name and spec.name != name:
                raise ValueError(f"monitor {name!r} says name: {spec.name!r}; leave name out")
            spec.name = name
        return value

    def all_monitors(self) -> dict[str, MonitorSpec]:
        """The monitors under ``monitors:`` and those declared on endpoints, by name."""
        found = dict(self.monitors)
        for endpoint, spec in self.endpoints.items():
            if spec.monitor is not None and spec.inference_table is not None:
                monitor = spec.monitor.to_monitor(endpoint, spec.inference_table.table)
                found[monitor.name] = monitor
        return found

    def all_jobs(self) -> dict[str, JobSpec]:
        """The jobs under ``jobs:`` and, for each monitor with a ``schedule``, its refresh
        job ``monitor_<name>`` (one ``lakeforge.tasks:refresh_monitor`` task on that
        schedule), which deploy creates and the scheduler fires like any job."""
        found = dict(self.jobs)
        for name, monitor in self.all_monitors().items():
            if monitor.schedule is not None:
                found[MONITOR_JOB_PREFIX + name] = JobSpec(
                    description=f"Refresh monitor {name} and evaluate its alerts",
                    tasks=[
                        TaskSpec(
                            key="refresh",
                            python="lakeforge.tasks:refresh_monitor",
                            parameters={"name": name},
                        )
                    ],
                    schedule=monitor.schedule,
                )
        return found

    @model_validator(mode="after")
    def _monitor_jobs(self) -> ProjectConfig:
        for name, monitor in self.all_monitors().items():
            if monitor.schedule is None:
                continue
            job = MONITOR_JOB_PREFIX + name
            if job in self.jobs:
                raise ValueError(
                    f"monitor {name!r} has a schedule, so it gets the refresh job {job!r}, but "
                    f"jobs: declares a job {job!r} too; rename that job"
                )
            check_name(job, f"monitor {name!r} has a schedule: its refresh job name")
        return self

    @field_validator("jobs")
    @classmethod
    def _job_names(cls, value: dict[str, JobSpec]) -> dict[str, JobSpec]:
        for name in value:
            check_name(name, "job name")
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoint_names(cls, value: dict[str, EndpointSpec]) -> dict[str, EndpointSpec]:
        for name in value:
            check_name(name, "endpoint name")
        return value

    @field_validator("llm_endpoints")
    @classmethod
    def _llm_endpoint_names(cls, value: dict[str, LLMEndpointSpec]) -> dict[str, LLMEndpointSpec]:
        for name in value:
            check_name(name, "LLM endpoint name")
        return value

    @field_validator("name")
    @classmethod
    def _project_name(cls, value: str) -> str:
        return check_name(value, "project name")

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, TargetConfig]) -> dict[str, TargetConfig]:
        if not value:
            raise ValueError("at least one target is required")
        for name in value:
            check_name(name, "target name")
        return value

    @model_validator(mode="after")
    def _conventional_links(self) -> ProjectConfig:
        """dev reads prod, staging promotes from dev, prod from staging, unless a target says."""
        for name, (field, default) in _CONVENTIONAL_LINKS.items():
            target = self.targets.get(name)
            if (
                target is not None
                and field not in target.model_fields_set
                and all(other in self.targets for other in default)
            ):
                setattr(target, field, list(default))
        return self

    @model_validator(mode="after")
    def _references(self) -> ProjectConfig:
        allowed = list(self.targets)
        if self.default_target not in self.targets:
            raise ValueError(
                f"default_target: {self.default_target!r} is not a declared target "
                f"(allowed: {', '.join(allowed)})"
            )
        catalogs: dict[str, str] = {}
        for name, target in self.targets.items():
            for field, others in (
                ("read_from", target.read_from),
                ("promote_from", target.promote_from),
            ):
                for other in others:
                    if other not in self.targets:
                        raise ValueError(
                            f"targets.{name}.{field}: names unknown target {other!r} "
                            f"(allowed: {', '.join(allowed)})"
                        )
            self._check_approvers(name, target)
            catalog = target.catalog or name
            if catalog in catalogs:
                raise ValueError(
                    f"targets.{name}.catalog: targets {catalogs[catalog]!r} and {name!r} "
                    f"both use catalog {catalog!r}"
                )
            catalogs[catalog] = name
        both = sorted(set(self.endpoints) & set(self.llm_endpoints))
        if both:
            raise ValueError(
                f"llm_endpoints: {', '.join(both)} also declared under endpoints: "
                "(one name, one endpoint)"
            )
        monitors = list(self.monitors)
        for endpoint, endpoint_spec in self.endpoints.items():
            if endpoint_spec.monitor is not None:
                name = endpoint_spec.monitor.name or endpoint
                if name in monitors:
                    raise ValueError(
                        f"endpoints.{endpoint}.monitor: monitor name {name!r} is already "
                        "declared (give the endpoint's monitor another name:)"
                    )
                monitors.append(name)
        for job, spec in self.jobs.items():
            for trigger in spec.triggers:
                unknown = [j for j in getattr(trigger, "jobs", []) if j not in self.jobs]
                if unknown:
                    raise ValueError(
                        f"jobs.{job}.triggers: job_finished names unknown job(s) "
                        f"{', '.join(unknown)} (jobs: {', '.join(self.jobs)})"
                    )
        return self

    def _check_approvers(self, name: str, target: TargetConfig) -> None:
        """Approver groups exist, and a manual policy names someone (fail closed)."""
        for policy in target.deployment.effective():
            field = f"targets.{name}.deployment" + (
                "" if policy.source == "default" else f".models[{policy.source!r}]"
            )
            users: set[str] = set()
            for approver in policy.approvers:
                group = approver.removeprefix("group:")
                if not approver.startswith("group:"):
                    users.add(approver)
                elif group not in self.groups:
                    raise ValueError(
                        f"{field}.approvers: unknown group {group!r} "
                        f"(groups: {', '.join(self.groups) or 'none declared'})"
                    )
                else:
                    users |= set(self.groups[group])
            if policy.gated and not users:
                raise ValueError(
                    f"{field}.approvers: approval is manual but no approver is named, so "
                    "nobody could approve (refused: a gate fails closed); name users or "
                    "groups, e.g. approvers: [alice, group:ml-leads]"
                )


def _expand_env(node: Any) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in string values with the environment's."""
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            value = os.environ.get(match.group(1), match.group(2))
            if value is None:
                raise ConfigError(f"environment variable {match.group(1)} is not set")
            return value

        return _ENV_REF.sub(sub, node)
    if isinstance(node, dict):
        return {key: _expand_env(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_env(value) for value in node]
    return node


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid project file"]
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        if not loc:  # cross-field checks name their field in the message
            lines.append(f"  field {msg}")
            continue
        if item["type"] == "extra_forbidden":
            allowed = _allowed_fields(item["loc"][:-1])
            msg = "unknown field" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        bad = item.get("input")
        secret = "api_key" in item["loc"]  # never echo what may be a credential
        hidden = secret or isinstance(bad, dict) or item["type"] == "missing"
        shown = "" if hidden else f" (got {bad!r})"
        lines.append(f"  field {loc}: {msg}{shown}")
    return "\n".join(lines)


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc`` in the project file."""
    model: type[BaseModel] = ProjectConfig
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            continue  # a dict key or list index: stay on the value type
        nested = _model_in(field.annotation)
        if nested is not None:
            model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``dict[str, Model]`` or ``Model | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _load_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None


def _merge_resources(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """Add the ``jobs:`` of ``resources/*.yml`` next to the project file (bundle-style)."""
    folder = path.parent / "resources"
    if not folder.is_dir():
        return raw
    jobs = dict(raw.get("jobs") or {})
    for file in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        extra = _load_yaml(file, file.read_text()) or {}
        unknown = sorted(set(extra) - {"jobs"}) if isinstance(extra, dict) else ["(not a mapping)"]
        if unknown:
            raise ConfigError(f"{file}: only 'jobs:' may be declared in resources (got {unknown})")
        for name, spec in (extra.get("jobs") or {}).items():
            if name in jobs:
                raise ConfigError(f"{file}: job {name!r} is already declared elsewhere")
            jobs[name] = spec
    return {**raw, "jobs": jobs} if jobs else raw


def _webhook_secrets(raw: dict[str, Any]) -> dict[str, str]:
    """Each webhook's ``secret`` as written (``${VAR}`` unexpanded), for error messages."""
    hooks = raw.get("webhooks")
    return {
        str(hook["name"]): hook["secret"]
        for hook in (hooks if isinstance(hooks, list) else [])
        if isinstance(hook, dict) and "name" in hook and isinstance(hook.get("secret"), str)
    }


def parse_config(path: Path, text: str) -> ProjectConfig:
    """Parse and validate project-file text; errors name the file, field and bad value."""
    raw = _load_yaml(path, text)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping with at least 'name:', got {type(raw).__name__}",
            hint="see `lakeforge init` for a template",
        )
    merged = _merge_resources(path, raw)
    try:
        return ProjectConfig.model_validate(
            _expand_env(merged), context={SECRET_SOURCES: _webhook_secrets(merged)}
        )
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None


def find_project_file(start: Path) -> Path:
    """The nearest ``lakeforge.yaml`` in ``start`` or one of its parents."""
    start = start.resolve()
    for folder in (start, *start.parents):
        candidate = folder / PROJECT_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {PROJECT_FILE} in {start} or any parent folder",
        hint="run `lakeforge init NAME` to create a project, or pass --project-dir",
    )
