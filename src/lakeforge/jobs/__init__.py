"""The jobs engine: DAGs of tasks declared in ``lakeforge.yaml``, run with history.

Inside a task, :func:`task_values` gives the values returned by upstream tasks and
:func:`job_context` the run's context (job, run id, target, git commit, task key).
"""

from __future__ import annotations

import json
import os
from typing import Any

from lakeforge.jobs._errors import JobError
from lakeforge.jobs._execution import run_if_met
from lakeforge.jobs._history import JobRun, TaskRun, record_run
from lakeforge.jobs._process import live_members, process_exited
from lakeforge.jobs._runner import JobRunner
from lakeforge.jobs._scheduler import Firing, Scheduler


def task_values(task: str | None = None) -> dict[str, Any]:
    """Values returned by upstream tasks of the running task: all, or one task's."""
    values: dict[str, Any] = json.loads(os.environ.get("LAKEFORGE_TASK_VALUES", "{}"))
    if task is None:
        return values
    if task not in values:
        raise JobError(f"no task values from {task!r} (upstream: {', '.join(values) or 'none'})")
    return dict(values[task])


def job_context() -> dict[str, Any]:
    """The running task's context: job, run_id, target, project_dir, code_dir (the deployed
    snapshot, or the working copy), deployment, git_commit (of that code), task."""
    return dict(json.loads(os.environ.get("LAKEFORGE_JOB_CONTEXT", "{}")))


__all__ = [
    "Firing",
    "JobError",
    "JobRun",
    "JobRunner",
    "Scheduler",
    "TaskRun",
    "job_context",
    "live_members",
    "process_exited",
    "record_run",
    "run_if_met",
    "task_values",
]
