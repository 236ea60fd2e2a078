"""Running jobs: each task attempt in its own subprocess (and process group), history in
the state store, retries with backoff, timeouts, ``run_if``, task values, cancel, repair.

A run follows the spec and runs the code the target deployed (see ``_source``), and
records which deployment and commit that was.

A task's process group is recorded before the task starts, the process dies with its
runner, and its outcome is written to a file before it exits: a runner killed at any
point leaves nothing running and loses no finished task (see ``_recovery``)."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from lakeforge.errors import LakeforgeError
from lakeforge.jobs._errors import JobError
from lakeforge.jobs._history import (
    FAILED,
    TERMINAL,
    close_run,
    record_run,
    refuse_run,
    result_file,
    utcnow,
)
from lakeforge.jobs._process import AttemptSpec, Outcome, group_identity, run_attempt
from lakeforge.jobs._recovery import adopt_orphans, recover_orphans
from lakeforge.jobs._source import JobSource, Sources
from lakeforge.project._jobs import JobSpec, RunIf, TaskSpec
from lakeforge.state import as_utc, job_runs, job_settings, task_runs, upsert

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

ProgressCallback = Callable[[str, str, str], None]  # task, status, detail
_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")
_POLL_S = 0.2
RUNNER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TaskRun:
    task: str
    status: str
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    values: dict[str, Any]
    log_path: str | None


@dataclass(frozen=True)
class JobRun:
    id: int
    job: str
    status: str
    trigger: str
    parameters: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    error: str | None
    tasks: dict[str, TaskRun]
    deployment: int | None = None  # the deployment whose code ran; None: the working copy
    commit: str | None = None  # the git commit of that code


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


class JobRunner:
    """Runs the jobs declared in the project on one target."""

    def __init__(self, ws: Workspace, *, max_parallel_tasks: int = 2) -> None:
        self.ws = ws
        self.max_parallel = max_parallel_tasks
        home = (
            Path(ws.target.root)
            if ws.target.is_local
            else ws.project.directory / ".lakeforge" / ws.target.name
        )
        self.log_root = home / "jobs" / "runs"
        self.sources = Sources(ws)

    # -- lookups --------------------------------------------------------------------------

    def source(self, job: str) -> JobSource:
        """What a run of ``job`` started now follows and runs: the deployed snapshot, or
        in development mode the working copy of a job not deployed."""
        return self.sources.for_new_run(job)

    def spec(self, job: str) -> JobSpec:
        return self.source(job).spec

    def get(self, run_id: int) -> JobRun:
        engine = self.ws.state.connect_engine()
        with engine.connect() as conn:
            row = conn.execute(select(job_runs).where(job_runs.c.id == run_id)).first()
            if row is None:
                raise JobError(f"no job run {run_id} in target {self.ws.target.name!r}")
            tasks = conn.execute(select(task_runs).where(task_runs.c.run_id == run_id)).all()
        return JobRun(
            id=row.id,
            job=row.job,
            status=row.status,
            trigger=row.trigger,
            parameters=json.loads(row.parameters),
            created_at=as_utc(row.created_at),
            started_at=row.started_at and as_utc(row.started_at),
            ended_at=row.ended_at and as_utc(row.ended_at),
            error=row.error,
            deployment=row.deployment_id,
            commit=row.code_commit,
            tasks={
                t.task: TaskRun(
                    t.task,
                    t.status,
                    t.attempts,
                    t.started_at and as_utc(t.started_at),
                    t.ended_at and as_utc(t.ended_at),
                    t.error,
                    json.loads(t.task_values or "{}"),
                    t.log_path,
                )
                for t in tasks
            },
        )

    def runs(self, job: str | None = None, *, limit: int = 20) -> list[JobRun]:
        query = select(job_runs.c.id).order_by(job_runs.c.id.desc()).limit(limit)
        if job:
            query = query.where(job_runs.c.job == job)
        with self.ws.state.connect_engine().connect() as conn:
            ids = conn.execute(query).scalars().all()
        return [self.get(i) for i in ids]

    def paused(self, job: str) -> bool:
        with self.ws.state.connect_engine().connect() as conn:
            value = conn.execute(
                select(job_settings.c.paused).where(job_settings.c.job == job)
            ).scalar()
        if value is None:
            try:
                schedule = self.spec(job).schedule
            except JobError:  # not runnable here: nothing of it fires
                return False
            return bool(schedule and schedule.paused)
        return bool(value)

    def set_paused(self, job: str, paused: bool) -> None:
        self.spec(job)
        with self.ws.state.connect_engine().begin() as conn:
            upsert(conn, job_settings, {"job": job}, {"paused": paused, "updated_at": utcnow()})

    # -- running --------------------------------------------------------------------------

    def run(
        self,
        job: str,
        *,
        parameters: dict[str, Any] | None = None,
        trigger: str = "manual",
        trigger_info: dict[str, Any] | None = None,
        fire_key: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> JobRun | None:
        """Run ``job`` now, in this process; returns the finished run.

        With ``fire_key`` (a scheduled time or an event id) the run is recorded only if
        that key never fired before for this job, atomically: None means it already had.
        """
        with self.ws.state.connect_engine().begin() as conn:
            run_id = self.record(
                conn,
                job,
                parameters=parameters,
                trigger=trigger,
                trigger_info=trigger_info,
                fire_key=fire_key,
            )
        return None if run_id is None else self.start(run_id, progress)

    def record(
        self,
        conn: Connection,
        job: str,
        *,
        parameters: dict[str, Any] | None = None,
        trigger: str = "manual",
        trigger_info: dict[str, Any] | None = None,
        fire_key: str | None = None,
    ) -> int | None:
        """Record a queued run of ``job`` in ``conn``'s transaction, for :meth:`start`;
        its id, or None when ``fire_key`` already fired for this job."""
        source = self.source(job)
        spec = source.spec
        unknown = sorted(set(parameters or {}) - set(spec.parameters))
        if unknown:
            raise JobError(
                f"job {job!r} has no parameter(s) {', '.join(unknown)} "
                f"(parameters: {', '.join(spec.parameters) or 'none'})"
            )
        return record_run(
            conn,
            job=job,
            tasks=[t.key for t in spec.tasks],
            parameters={**spec.parameters, **(parameters or {})},
            trigger=trigger,
            trigger_info=trigger_info,
            fire_key=fire_key,
            runner=RUNNER,
            deployment_id=None if source.deployment is None else source.deployment.id,
            code_commit=source.commit,
        )

    def start(self, run_id: int, progress: ProgressCallback | None = None) -> JobRun:
        """Run a recorded (queued) run once the job's concurrency limit admits it."""
        with self.ws.state.connect_engine().connect() as conn:
            row = conn.execute(
                select(job_runs.c.job, job_runs.c.deployment_id).where(job_runs.c.id == run_id)
            ).one()
        try:
            source = self._verified(row.job, row.deployment_id)
        except LakeforgeError as exc:  # recorded, but its code is gone or changed
            with self.ws.state.connect_engine().begin() as conn:
                refuse_run(conn, self.ws.state, run_id, row.job, exc.message)
            return self.get(run_id)
        spec = source.spec
        while (admitted := self._admit(run_id, row.job, spec)) is None:
            time.sleep(_POLL_S)
        if not admitted:
            return self.get(run_id)
        return self._execute(run_id, source, set(spec.order()), progress)

    def _verified(self, job: str, deployment_id: int | None) -> JobSource:
        """The source of a recorded run, its snapshot checked against the deployed hash."""
        source = self.sources.for_run(job, deployment_id)
        if source.deployment is not None:
            source.deployment.verify()
        return source

    def _admit(self, run_id: int, job: str, spec: JobSpec) -> bool | None:
        """Move a queued run to running if a slot is free (True); ``skip`` policy without
        one: record it as skipped (False); ``queue``: None, to try again.

        False too if the run is no longer queued (another process started or closed it).
        """
        with self.ws.state.connect_engine().begin() as conn:
            active = (
                conn.execute(
                    select(func.count())
                    .select_from(job_runs)
                    .where(job_runs.c.job == job, job_runs.c.status == "running")
                ).scalar()
                or 0
            )
            earlier = (
                conn.execute(
                    select(func.count())
                    .select_from(job_runs)
                    .where(
                        job_runs.c.job == job,
                        job_runs.c.status == "queued",
                        job_runs.c.id < run_id,
                    )
                ).scalar()
                or 0
            )
            queued = (job_runs.c.id == run_id) & (job_runs.c.status == "queued")
            if active + earlier < spec.max_concurrent_runs:
                return bool(
                    conn.execute(
                        update(job_runs).where(queued).values(status="running", started_at=utcnow())
                    ).rowcount
                )
            if spec.concurrency_policy == "queue":
                return None
            skipped = conn.execute(
                update(job_runs)
                .where(queued)
                .values(
                    status="skipped",
                    ended_at=utcnow(),
                    error=f"{active} run(s) already active (max_concurrent_runs="
                    f"{spec.max_concurrent_runs}, policy skip)",
                )
            ).rowcount
            if skipped:
                conn.execute(
                    update(task_runs).where(task_runs.c.run_id == run_id).values(status="skipped")
                )
            return False

    def recover_orphans(self) -> list[int]:
        """Close the runs whose runner process on this host died (repair reruns them),
        after killing what is left of their tasks; their ids."""
        return recover_orphans(self.ws.state)

    def adopt_orphans(self) -> list[int]:
        """Take over the queued runs a scheduler on this host fired and died before
        starting, for :meth:`start`; their ids."""
        return adopt_orphans(self.ws.state, RUNNER)

    def repair(
        self,
        run_id: int,
        *,
        parameters: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> JobRun:
        """Rerun the failed, timed-out, cancelled or skipped tasks and their dependents.

        A run whose runner died is recovered first (its task processes are killed).
        """
        self.recover_orphans()
        run = self.get(run_id)
        if run.status in ("running", "queued"):
            raise JobError(f"run {run_id} is still {run.status}; repair it once it has finished")
        source = self._verified(run.job, run.deployment)
        spec = source.spec
        again = spec.downstream({k for k, t in run.tasks.items() if t.status != "succeeded"})
        if not again:
            raise JobError(f"run {run_id} has nothing to repair: every task succeeded")
        params = {**run.parameters, **(parameters or {})}
        with self.ws.state.connect_engine().begin() as conn:
            taken = conn.execute(
                update(job_runs)
                .where(job_runs.c.id == run_id, job_runs.c.status == run.status)
                .values(
                    status="running",
                    parameters=json.dumps(params),
                    ended_at=None,
                    error=None,
                    cancel_requested=False,
                    runner=RUNNER,
                )
            ).rowcount
            if not taken:
                raise JobError(
                    f"run {run_id} changed while this repair began (another repair?); "
                    "look at `lakeforge jobs runs` and repair it once it has finished"
                )
            conn.execute(
                update(task_runs)
                .where(task_runs.c.run_id == run_id, task_runs.c.task.in_(again))
                .values(status="pending", error=None, ended_at=None)
            )
        return self._execute(run_id, source, again, progress)

    def cancel(self, run_id: int) -> None:
        """Ask a running run to stop; its task processes (and their children) are killed."""
        self.recover_orphans()  # a run whose runner died is closed, not left to cancel
        run = self.get(run_id)
        if run.status not in ("running", "queued"):
            raise JobError(
                f"run {run_id} is {run.status}; only running or queued runs can be cancelled"
            )
        with self.ws.state.connect_engine().begin() as conn:
            conn.execute(
                update(job_runs).where(job_runs.c.id == run_id).values(cancel_requested=True)
            )

    def _cancel_requested(self, run_id: int) -> bool:
        with self.ws.state.connect_engine().connect() as conn:
            return bool(
                conn.execute(
                    select(job_runs.c.cancel_requested).where(job_runs.c.id == run_id)
                ).scalar()
            )

    def _execute(
        self, run_id: int, source: JobSource, todo: set[str], progress: ProgressCallback | None
    ) -> JobRun:
        spec = source.spec
        run = self.get(run_id)
        states = {k: t.status for k, t in run.tasks.items()}
        values = {k: t.values for k, t in run.tasks.items()}
        with self.ws.state.connect_engine().connect() as conn:
            info = conn.execute(
                select(job_runs.c.trigger_info).where(job_runs.c.id == run_id)
            ).scalar()
        context = {
            "trigger": json.loads(info or "{}"),
            "job": run.job,
            "run_id": run_id,
            "target": self.ws.target.name,
            "project_dir": str(self.ws.project.directory),
            "code_dir": str(source.code_dir),
            "deployment": None if source.deployment is None else source.deployment.id,
            "git_commit": source.commit or "",
        }
        running: dict[Future[tuple[str, dict[str, Any], str | None]], str] = {}
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            while True:
                for key in spec.order():
                    if (
                        key not in todo
                        or states[key] != "pending"
                        or len(running) >= self.max_parallel
                    ):
                        continue
                    task = spec.task(key)
                    upstream = [states[d] for d in task.depends_on]
                    if any(s not in TERMINAL for s in upstream):
                        continue
                    if not run_if_met(task.run_if, upstream):
                        states[key] = "skipped"
                        self._task_update(
                            run_id,
                            key,
                            status="skipped",
                            error=f"run_if {task.run_if} not met ({upstream})",
                        )
                        _notify(progress, key, "skipped", task.run_if)
                        continue
                    states[key] = "running"
                    upstream_values = {
                        d: values.get(d, {}) for d in spec.order() if states.get(d) == "succeeded"
                    }
                    params = _render(
                        task.parameters,
                        {**context, "parameters": run.parameters, "tasks": upstream_values},
                    )
                    running[
                        pool.submit(
                            self._attempts,
                            run_id,
                            source,
                            task,
                            params,
                            upstream_values,
                            context,
                            progress,
                        )
                    ] = key
                if not running:
                    break
                done, _ = wait(running, timeout=_POLL_S, return_when=FIRST_COMPLETED)
                if self._cancel_requested(run_id):
                    for key, state in states.items():
                        if state == "pending":
                            states[key] = "canceled"
                            self._task_update(run_id, key, status="canceled")
                for future in done:
                    key = running.pop(future)
                    status, task_values, _error = future.result()
                    states[key], values[key] = status, task_values
        return self._finish(run_id, states)

    def _attempts(
        self,
        run_id: int,
        source: JobSource,
        task: TaskSpec,
        params: dict[str, Any],
        upstream: dict[str, dict[str, Any]],
        context: dict[str, Any],
        progress: ProgressCallback | None,
    ) -> tuple[str, dict[str, Any], str | None]:
        log = self.log_root / str(run_id) / f"{task.key}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        status, error, values = "failed", None, dict[str, Any]()
        for attempt in range(task.retries + 1):
            if attempt:
                time.sleep(task.retry_backoff_s * 2 ** (attempt - 1))
            # an earlier run's outcome (before a repair) must not pass for this attempt's
            result_file(log, attempt + 1).unlink(missing_ok=True)
            self._task_update(
                run_id,
                task.key,
                status="running",
                started_at=utcnow(),
                log_path=str(log),
                attempts=attempt + 1,
            )
            _notify(progress, task.key, "running", f"attempt {attempt + 1}")
            outcome = self._attempt(
                run_id, source, task, params, upstream, context, log, attempt + 1
            )
            status, error, values = outcome.status, outcome.error, outcome.values
            if status in ("succeeded", "canceled"):
                break
            if attempt < task.retries:  # the final outcome is reported once, below
                _notify(progress, task.key, status, error or "")
        self._task_update(
            run_id,
            task.key,
            status=status,
            ended_at=utcnow(),
            error=error,
            task_values=json.dumps(values),
        )
        _notify(progress, task.key, status, error or "")
        return status, values, error

    def _attempt(
        self,
        run_id: int,
        source: JobSource,
        task: TaskSpec,
        params: dict[str, Any],
        upstream: dict[str, dict[str, Any]],
        context: dict[str, Any],
        log: Path,
        attempt_no: int,
    ) -> Outcome:
        script = task.script and str((source.code_dir / task.script).resolve())
        attempt = AttemptSpec(
            task=task.key,
            python=task.python,
            script=script,
            parameters=params,
            upstream_values=upstream,
            context={**context, "task": task.key},
            code_dir=str(source.code_dir),
            target=self.ws.target.name,
            timeout_s=task.timeout_s,
            env=source.env(self.ws.project.directory),
        )
        if source.spec.executor == "ray":
            from lakeforge.jobs._ray import run_on_ray

            outcome, output = run_on_ray(attempt, self.ws.target, run_id)
            with log.open("a") as out:
                out.write(output)
            return outcome

        def started(pid: int) -> None:  # recorded before the task begins, for recovery
            self._task_update(run_id, task.key, process=group_identity(pid))

        with log.open("a") as out:
            return run_attempt(
                attempt,
                out,
                lambda: self._cancel_requested(run_id),
                result=result_file(log, attempt_no),  # removed before the attempt began
                started=started,
            )

    def _task_update(self, run_id: int, task: str, **values: Any) -> None:
        with self.ws.state.connect_engine().begin() as conn:
            conn.execute(
                update(task_runs)
                .where(task_runs.c.run_id == run_id, task_runs.c.task == task)
                .values(**values)
            )

    def _finish(self, run_id: int, states: dict[str, str]) -> JobRun:
        with self.ws.state.connect_engine().begin() as conn:
            job = conn.execute(select(job_runs.c.job).where(job_runs.c.id == run_id)).scalar()
            close_run(conn, self.ws.state, run_id, str(job), states)
        return self.get(run_id)


def _notify(progress: ProgressCallback | None, task: str, status: str, detail: str) -> None:
    if progress is not None:
        progress(task, status, detail)


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
