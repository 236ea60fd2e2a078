"""Job specs: DAGs of tasks declared under ``jobs:`` in ``lakeforge.yaml`` (or ``resources/*.yml``).

```yaml
jobs:
  retrain:
    parameters: {model: dev.ml.flight_delay}
    max_concurrent_runs: 1
    concurrency_policy: skip          # skip | queue
    schedule: {cron: "0 6 * * *", timezone: Europe/Paris, catch_up: latest}
    tasks:
      - key: features
        python: my_project.pipelines:build_features
        parameters: {table: dev.silver.flights}
      - key: train
        python: my_project.pipelines:train
        depends_on: [features]
        retries: 2
        retry_backoff_s: 5
        timeout_s: 900
      - key: notify
        script: scripts/notify.sh
        depends_on: [train]
        run_if: all_done
```

References are checked when the file loads: unknown tasks, dependency cycles, bad
``module:function`` names, unknown executors and invalid cron expressions are errors
naming the job.
"""

from __future__ import annotations

import re
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from lakeforge.project._base import Strict

RunIf = Literal[
    "all_success",
    "all_done",
    "none_failed",
    "at_least_one_success",
    "all_failed",
    "at_least_one_failed",
]
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
EXECUTORS_GROUP = "lakeforge.executors"
#: The built-in executors, as entry points are written: ``module:builder`` (imported only
#: when a task runs on it, by ``lakeforge.jobs.executors``).
BUILT_IN_EXECUTORS = {
    "local": "lakeforge.jobs.executors._local:LocalExecutor",
    "ray": "lakeforge.jobs.executors._ray:RayExecutor",
}


def executor_entry_points() -> dict[str, EntryPoint]:
    """Every executor by name: the built-in ones, and those installed packages declare
    under the ``lakeforge.executors`` entry-point group (a built-in name wins)."""
    found = {ep.name: ep for ep in entry_points(group=EXECUTORS_GROUP)}
    for name, value in BUILT_IN_EXECUTORS.items():
        found[name] = EntryPoint(name, value, EXECUTORS_GROUP)
    return found


def _known_executor(value: str | None) -> str | None:
    if value is None or value in BUILT_IN_EXECUTORS:
        return value
    known = executor_entry_points()
    if value not in known:
        raise ValueError(
            f"unknown executor {value!r} (executors: {', '.join(sorted(known))}; packages "
            f"add more through the {EXECUTORS_GROUP!r} entry-point group)"
        )
    return value


class TaskSpec(Strict):
    """One task: a Python ``module:function`` or a script, run in its own subprocess."""

    key: str
    python: str | None = None
    script: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    run_if: RunIf = "all_success"
    retries: int = Field(default=0, ge=0, le=20)
    retry_backoff_s: float = Field(default=1.0, ge=0)
    timeout_s: float | None = Field(default=None, gt=0)
    executor: str | None = None
    """Where this task's attempts run; default: the job's ``executor``."""

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str | None) -> str | None:
        return _known_executor(value)

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _KEY.fullmatch(value):
            raise ValueError(f"task key {value!r} is not valid: letters, digits, '_' and '-'")
        return value

    @field_validator("python")
    @classmethod
    def _callable(cls, value: str | None) -> str | None:
        if value is not None and not _CALLABLE.fullmatch(value):
            raise ValueError(f"python {value!r} is not 'module:function' (e.g. pkg.mod:train)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TaskSpec:
        if (self.python is None) == (self.script is None):
            raise ValueError(f"task {self.key!r}: give exactly one of python or script")
        return self


class CronSchedule(Strict):
    """Fire at cron times in a time zone; runs missed while down follow ``catch_up``."""

    cron: str
    timezone: str = "UTC"
    catch_up: Literal["skip", "latest", "all"] = "latest"
    paused: bool = False

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"cron expression {value!r} is not valid (e.g. '0 6 * * *')")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Paris)") from None
        return value


class TableUpdateTrigger(Strict):
    """Fire when any of these lakehouse tables gets a new Delta version."""

    type: Literal["table_update"]
    tables: list[str] = Field(min_length=1)


class FileArrivalTrigger(Strict):
    """Fire when new files matching ``pattern`` appear under ``path`` (relative to the project)."""

    type: Literal["file_arrival"]
    path: str
    pattern: str = "*"


RegistryEvent = Literal["model_version.created", "alias.moved"]


class ModelEventTrigger(Strict):
    """Fire on registry events: a new version, or an alias moved (optionally one alias)."""

    type: Literal["model_event"]
    events: list[RegistryEvent] = Field(
        default_factory=lambda: list[RegistryEvent](["model_version.created", "alias.moved"])
    )
    models: list[str] = Field(default_factory=lambda: ["*"])
    alias: str | None = None


class JobFinishedTrigger(Strict):
    """Fire when one of these jobs finishes with one of these statuses."""

    type: Literal["job_finished"]
    jobs: list[str] = Field(min_length=1)
    status: list[str] = Field(default_factory=lambda: ["succeeded"])


class MonitorAlertTrigger(Strict):
    """Fire on a monitor alert (monitors publish ``monitor.alert`` events)."""

    type: Literal["monitor_alert"]
    monitors: list[str] = Field(default_factory=lambda: ["*"])


Trigger = Annotated[
    TableUpdateTrigger
    | FileArrivalTrigger
    | ModelEventTrigger
    | JobFinishedTrigger
    | MonitorAlertTrigger,
    Field(discriminator="type"),
]


class JobSpec(Strict):
    """A DAG of tasks with parameters, an optional schedule and a concurrency limit."""

    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tasks: list[TaskSpec]
    schedule: CronSchedule | None = None
    triggers: list[Trigger] = Field(default_factory=list)
    executor: str = "local"
    """Where task attempts run, by name: ``local`` (subprocesses of the runner), ``ray``
    (a Ray cluster, ``targets.<t>.ray_address``) or one an installed package declares."""
    max_concurrent_runs: int = Field(default=1, ge=1)
    concurrency_policy: Literal["skip", "queue"] = "skip"

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: str) -> str:
        return str(_known_executor(value))

    @model_validator(mode="after")
    def _dag(self) -> JobSpec:
        keys = [task.key for task in self.tasks]
        if not keys:
            raise ValueError("a job needs at least one task")
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"duplicate task key(s): {', '.join(duplicates)}")
        for task in self.tasks:
            unknown = [d for d in task.depends_on if d not in keys]
            if unknown:
                raise ValueError(
                    f"task {task.key!r} depends on unknown task(s) {', '.join(unknown)} "
                    f"(tasks: {', '.join(keys)})"
                )
        cycle = find_cycle({t.key: t.depends_on for t in self.tasks})
        if cycle:
            raise ValueError(f"dependency cycle: {' -> '.join(cycle)}")
        return self

    def task(self, key: str) -> TaskSpec:
        return next(t for t in self.tasks if t.key == key)

    def order(self) -> list[str]:
        """Task keys in a topological order (stable: declaration order among ready tasks)."""
        done: list[str] = []
        pending = [t.key for t in self.tasks]
        while pending:
            ready = [k for k in pending if all(d in done for d in self.task(k).depends_on)]
            done += ready
            pending = [k for k in pending if k not in ready]
        return done

    def downstream(self, keys: set[str]) -> set[str]:
        """``keys`` and every task that depends on them, directly or not."""
        found = set(keys)
        changed = True
        while changed:
            changed = False
            for task in self.tasks:
                if task.key not in found and found.intersection(task.depends_on):
                    found.add(task.key)
                    changed = True
        return found


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle as a path (``a -> b -> a``), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


class TableSpec(Strict):
    """A table declared in the project; ``lakeforge deploy`` creates it in each target.

    ``columns`` is SQL, e.g. ``"id BIGINT, name VARCHAR, ts TIMESTAMP"``.
    """

    columns: str
    partition_by: list[str] = Field(default_factory=list)
    primary_key: list[str] = Field(default_factory=list)
    comment: str | None = None
    column_comments: dict[str, str] = Field(default_factory=dict)
