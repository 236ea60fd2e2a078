"""Executing one run's DAG: tasks in dependency order, ``run_if``, parameters rendered from
upstream values, each task's attempts (retries with backoff) on its executor.

Attempts are numbered per task across the whole run, repairs included: a repair's first
attempt of a task that had two is attempt 3, in the log and in the run's history.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, select, update
from sqlalchemy.pool import NullPool

from lakeforge.errors import LakeforgeError
from lakeforge.jobs._errors import JobError
from lakeforge.jobs._history import FAILED, TERMINAL, JobRun, result_file, utcnow
from lakeforge.jobs._process import AttemptSpec, Outcome
from lakeforge.jobs._source import JobSource
from lakeforge.jobs.executors import Attempt, open_executor
from lakeforge.project import RunIf, TaskSpec
from lakeforge.state import job_runs, task_runs

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

ProgressCallback = Callable[[str, str, str], None]  # task, status, detail
TaskResult = tuple[str, dict[str, Any], str | None]  # status, values, error
_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")
POLL_S = 0.2


def run_if_met(rule: RunIf, upstream: list[str]) -> bool:
    """Whether a task runs, given the final states of its direct dependencies."""
    if not upstream:
        return True
    succeeded = [s == "succeeded" for s in upstream]
    failed = [s in FAILED for s in upstream]
    return {
        "all_success": all(succeeded),
        "all_done": True,
        "none_failed": not any(failed),
        "at_least_one_success": any(succeeded),
        "all_failed": all(failed),
        "at_least_one_failed": any(failed),
    }[rule]


class CancelRequested:
    """Whether a cancel of run ``run_id`` was asked for, read from the state store at most
    every ``every_s``. Picklable (the store's URL and the run id), so an executor that
    supervises a task elsewhere polls it there."""

    def __init__(self, state_url: str, run_id: int, every_s: float = POLL_S) -> None:
        self.state_url, self.run_id, self.every_s = state_url, run_id, every_s
        self._engine: Engine | None = None
        self._checked, self._requested = float("-inf"), False

    def __getstate__(self) -> dict[str, Any]:
        return {"state_url": self.state_url, "run_id": self.run_id, "every_s": self.every_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __call__(self) -> bool:
        if time.monotonic() - self._checked >= self.every_s:
            if self._engine is None:  # no pool: nothing is held between checks
                self._engine = create_engine(self.state_url, poolclass=NullPool)
            with self._engine.connect() as conn:
                self._requested = bool(
                    conn.execute(
                        select(job_runs.c.cancel_requested).where(job_runs.c.id == self.run_id)
                    ).scalar()
                )
            self._checked = time.monotonic()
        return self._requested


class Execution:
    """One pass over a run's DAG, running the tasks in ``todo`` that are pending."""

    def __init__(
        self,
        ws: Workspace,
        run: JobRun,
        source: JobSource,
        *,
        log_dir: Path,
        max_parallel: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.ws, self.run, self.source, self.spec = ws, run, source, source.spec
        self.log_dir, self.max_parallel, self.progress = log_dir, max_parallel, progress
        self.cancelled = CancelRequested(ws.target.state_store_url, run.id)

    def execute(self, todo: set[str], trigger_info: dict[str, Any]) -> dict[str, str]:
        """Run the pending tasks of ``todo`` as their dependencies allow; every task's
        final state."""
        spec, run = self.spec, self.run
        states = {k: t.status for k, t in run.tasks.items()}
        values = {k: t.values for k, t in run.tasks.items()}
        context = {
            "trigger": trigger_info,
            "job": run.job,
            "run_id": run.id,
            "target": self.ws.target.name,
            "project_dir": str(self.ws.project.directory),
            "code_dir": str(self.source.code_dir),
            "deployment": None if self.source.deployment is None else self.source.deployment.id,
            "git_commit": self.source.commit or "",
        }
        running: dict[Future[TaskResult], str] = {}
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            while True:
                for key in spec.order():
                    if key not in todo or states[key] != "pending":
                        continue
                    if len(running) >= self.max_parallel:
                        break
                    task = spec.task(key)
                    upstream = [states[d] for d in task.depends_on]
                    if any(s not in TERMINAL for s in upstream):
                        continue
                    if not run_if_met(task.run_if, upstream):
                        states[key] = "skipped"
                        error = f"run_if {task.run_if} not met ({upstream})"
                        self._task_update(key, status="skipped", error=error)
                        self._notify(key, "skipped", task.run_if)
                        continue
                    states[key] = "running"
                    upstream_values = {
                        d: values.get(d, {}) for d in spec.order() if states.get(d) == "succeeded"
                    }
                    params = _render(
                        task.parameters,
                        {**context, "parameters": run.parameters, "tasks": upstream_values},
                    )
                    future = pool.submit(self._attempts, task, params, upstream_values, context)
                    running[future] = key
                if not running:
                    break
                done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
                if self.cancelled():
                    for key, state in states.items():
                        if state == "pending":
                            states[key] = "canceled"
                            self._task_update(key, status="canceled")
                for future in done:
                    key = running.pop(future)
                    states[key], values[key], _error = future.result()
        return states

    def _attempts(
        self,
        task: TaskSpec,
        params: dict[str, Any],
        upstream: dict[str, dict[str, Any]],
        context: dict[str, Any],
    ) -> TaskResult:
        log = self.log_dir / f"{task.key}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        before = self.run.tasks[task.key].attempts  # earlier attempts, before a repair
        spec = AttemptSpec(
            task=task.key,
            python=task.python,
            script=task.script and str((self.source.code_dir / task.script).resolve()),
            parameters=params,
            upstream_values=upstream,
            context={**context, "task": task.key},
            code_dir=str(self.source.code_dir),
            target=self.ws.target.name,
            timeout_s=task.timeout_s,
            env=self.source.env(self.ws.project.directory),
        )

        def started(identity: str | None) -> None:  # recorded before the task begins
            self._task_update(task.key, process=identity)

        status, error, values = "failed", None, dict[str, Any]()
        for retry in range(task.retries + 1):
            if retry:
                time.sleep(task.retry_backoff_s * 2 ** (retry - 1))
            number = before + retry + 1
            result = result_file(log, number)
            result.unlink(missing_ok=True)  # an outcome left there must not pass for this one
            self._task_update(
                task.key, status="running", started_at=utcnow(), log_path=str(log), attempts=number
            )
            self._notify(task.key, "running", f"attempt {number}")
            with log.open("a") as out:
                out.write(f"--- {datetime.now(UTC).isoformat()} attempt {number} of {task.key}\n")
            outcome = self._run(task, Attempt(spec, log, result, self.cancelled, started))
            status, error, values = outcome.status, outcome.error, outcome.values
            if status in ("succeeded", "canceled"):
                break
            if retry < task.retries:  # the final outcome is reported once, below
                self._notify(task.key, status, error or "")
        self._task_update(
            task.key, status=status, ended_at=utcnow(), error=error, task_values=json.dumps(values)
        )
        self._notify(task.key, status, error or "")
        return status, values, error

    def _run(self, task: TaskSpec, attempt: Attempt) -> Outcome:
        """One attempt on the task's executor; an executor that cannot start (an unknown
        name, a missing extra, an unreachable cluster) fails the attempt, saying why."""
        name = task.executor or self.spec.executor
        try:
            return open_executor(name, self.ws.target).run(attempt)
        except LakeforgeError as exc:
            with attempt.log.open("a") as out:
                out.write(f"executor {name}: {exc}\n")
            return Outcome("failed", f"executor {name}: {exc.message}", {})

    def _task_update(self, task: str, **values: Any) -> None:
        with self.ws.state.connect_engine().begin() as conn:
            conn.execute(
                update(task_runs)
                .where(task_runs.c.run_id == self.run.id, task_runs.c.task == task)
                .values(**values)
            )

    def _notify(self, task: str, status: str, detail: str) -> None:
        if self.progress is not None:
            self.progress(task, status, detail)


def _render(value: Any, context: dict[str, Any]) -> Any:
    """Fill ``{{job.run_id}}``, ``{{target}}``, ``{{git_commit}}``, ``{{parameters.X}}`` and
    ``{{tasks.KEY.NAME}}`` (a task value of an upstream task) in string parameters."""
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    if not isinstance(value, str):
        return value
    scope = {**context, "job": {"run_id": context["run_id"], "name": context["job"]}}

    def resolve(path: str) -> Any:
        node: Any = scope
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                raise JobError(f"unknown reference {{{{{path}}}}} in task parameters")
            node = node[part]
        return node

    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:  # a parameter that is only a reference keeps the referenced value's type
        return resolve(whole.group(1))
    return _TEMPLATE.sub(lambda match: str(resolve(match.group(1))), value)
