"""Running jobs: each task attempt in its own subprocess (and process group), history in
the state store, retries with backoff, timeouts, ``run_if``, task values, cancel, repair."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from lakeforge._identity import current_user
from lakeforge.errors import LakeforgeError
from lakeforge.events import JOB_FINISHED, Outbox
from lakeforge.jobs._process import AttemptSpec, Outcome, run_attempt
from lakeforge.project._jobs import JobSpec, RunIf, TaskSpec
from lakeforge.state import as_utc, job_runs, job_settings, task_runs, trigger_fires, upsert
from lakeforge.tracking import git_info

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

TERMINAL = {"succeeded", "failed", "timed_out", "canceled", "skipped"}
FAILED = {"failed", "timed_out"}
ProgressCallback = Callable[[str, str, str], None]  # task, status, detail
_TEMPLATE = re.compile(r"\{\{\s*([a-zA-Z_][\w.]*)\s*\}\}")
_POLL_S = 0.2
RUNNER = f"{socket.gethostname()}:{os.getpid()}"


class JobError(LakeforgeError):
    """An unknown job or run, or a run that cannot be repaired or cancelled."""


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


def _utcnow() -> datetime:
    return datetime.now(UTC)


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

    # -- lookups --------------------------------------------------------------------------

    def spec(self, job: str) -> JobSpec:
        jobs = self.ws.project.config.jobs
        if job not in jobs:
            raise JobError(f"unknown job {job!r} (jobs: {', '.join(jobs) or 'none declared'})")
        return jobs[job]

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
            schedule = self.spec(job).schedule
            return bool(schedule and schedule.paused)
        return bool(value)

    def set_paused(self, job: str, paused: bool) -> None:
        self.spec(job)
        with self.ws.state.connect_engine().begin() as conn:
            upsert(conn, job_settings, {"job": job}, {"paused": paused, "updated_at": _utcnow()})

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
        spec = self.spec(job)
        params = {**spec.parameters, **(parameters or {})}
        unknown = sorted(set(parameters or {}) - set(spec.parameters))
        if unknown:
            raise JobError(
                f"job {job!r} has no parameter(s) {', '.join(unknown)} "
                f"(parameters: {', '.join(spec.parameters) or 'none'})"
            )
        admitted = self._admit(job, spec, params, trigger, trigger_info, fire_key)
        if admitted is None:
            return None
        run_id, started = admitted
        if not started:
            return self.get(run_id)
        return self._execute(run_id, spec, set(spec.order()), progress)

    def _admit(
        self,
        job: str,
        spec: JobSpec,
        params: dict[str, Any],
        trigger: str,
        trigger_info: dict[str, Any] | None,
        fire_key: str | None,
    ) -> tuple[int, bool] | None:
        """Record the run and apply the concurrency limit: (run id, started) or None.

        ``skip`` records a skipped run; ``queue`` waits for a free slot. With a
        ``fire_key`` already fired for this job nothing is recorded (None).
        """
        engine = self.ws.state.connect_engine()
        try:
            with engine.begin() as conn:
                if fire_key is not None:
                    conn.execute(
                        insert(trigger_fires).values(job=job, fire_key=fire_key, fired_at=_utcnow())
                    )
                key = conn.execute(
                    insert(job_runs).values(
                        job=job,
                        status="queued",
                        trigger=trigger,
                        trigger_info=json.dumps(trigger_info or {}, default=str),
                        parameters=json.dumps(params),
                        created_at=_utcnow(),
                        cancel_requested=False,
                        actor=current_user(),
                        runner=RUNNER,
                    )
                ).inserted_primary_key
                assert key is not None
                run_id = int(key[0])
                conn.execute(
                    insert(task_runs),
                    [
                        {"run_id": run_id, "task": t.key, "status": "pending", "attempts": 0}
                        for t in spec.tasks
                    ],
                )
                if fire_key is not None:
                    conn.execute(
                        update(trigger_fires)
                        .where(trigger_fires.c.job == job, trigger_fires.c.fire_key == fire_key)
                        .values(run_id=run_id)
                    )
        except IntegrityError:
            return None  # this scheduled time or event already fired
        while True:
            with engine.begin() as conn:
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
                if active + earlier < spec.max_concurrent_runs:
                    conn.execute(
                        update(job_runs)
                        .where(job_runs.c.id == run_id)
                        .values(status="running", started_at=_utcnow())
                    )
                    return run_id, True
                if spec.concurrency_policy == "skip":
                    conn.execute(
                        update(job_runs)
                        .where(job_runs.c.id == run_id)
                        .values(
                            status="skipped",
                            ended_at=_utcnow(),
                            error=f"{active} run(s) already active (max_concurrent_runs="
                            f"{spec.max_concurrent_runs}, policy skip)",
                        )
                    )
                    conn.execute(
                        update(task_runs)
                        .where(task_runs.c.run_id == run_id)
                        .values(status="skipped")
                    )
                    return run_id, False
            time.sleep(_POLL_S)

    def recover_orphans(self) -> list[int]:
        """Fail runs whose runner process on this host has died (repair reruns them)."""
        host = socket.gethostname()
        with self.ws.state.connect_engine().begin() as conn:
            rows = conn.execute(
                select(job_runs.c.id, job_runs.c.runner).where(
                    job_runs.c.status.in_(["queued", "running"])
                )
            ).all()
            dead = [r.id for r in rows if _dead_runner(r.runner, host)]
            if dead:
                conn.execute(
                    update(job_runs)
                    .where(job_runs.c.id.in_(dead))
                    .values(
                        status="failed",
                        ended_at=_utcnow(),
                        error="the process running it died; `lakeforge jobs repair` reruns it",
                    )
                )
                conn.execute(
                    update(task_runs)
                    .where(
                        task_runs.c.run_id.in_(dead),
                        task_runs.c.status.in_(["pending", "running"]),
                    )
                    .values(status="failed", error="runner died")
                )
        return dead

    def repair(
        self,
        run_id: int,
        *,
        parameters: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> JobRun:
        """Rerun the failed, timed-out, cancelled or skipped tasks and their dependents."""
        run = self.get(run_id)
        if run.status in ("running", "queued"):
            raise JobError(f"run {run_id} is still {run.status}; repair it once it has finished")
        spec = self.spec(run.job)
        again = spec.downstream({k for k, t in run.tasks.items() if t.status != "succeeded"})
        if not again:
            raise JobError(f"run {run_id} has nothing to repair: every task succeeded")
        params = {**run.parameters, **(parameters or {})}
        with self.ws.state.connect_engine().begin() as conn:
            conn.execute(
                update(job_runs)
                .where(job_runs.c.id == run_id)
                .values(
                    status="running",
                    parameters=json.dumps(params),
                    ended_at=None,
                    error=None,
                    cancel_requested=False,
                )
            )
            conn.execute(
                update(task_runs)
                .where(task_runs.c.run_id == run_id, task_runs.c.task.in_(again))
                .values(status="pending", error=None, ended_at=None)
            )
        return self._execute(run_id, spec, again, progress)

    def cancel(self, run_id: int) -> None:
        """Ask a running run to stop; its task processes (and their children) are killed."""
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
        self, run_id: int, spec: JobSpec, todo: set[str], progress: ProgressCallback | None
    ) -> JobRun:
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
            "git_commit": git_info(self.ws.project.directory).commit or "",
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
                            self._attempts, run_id, task, params, upstream_values, context, progress
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
            self._task_update(
                run_id,
                task.key,
                status="running",
                started_at=_utcnow(),
                log_path=str(log),
                attempts=attempt + 1,
            )
            _notify(progress, task.key, "running", f"attempt {attempt + 1}")
            outcome = self._attempt(run_id, task, params, upstream, context, log)
            status, error, values = outcome.status, outcome.error, outcome.values
            if status in ("succeeded", "canceled"):
                break
            if attempt < task.retries:  # the final outcome is reported once, below
                _notify(progress, task.key, status, error or "")
        self._task_update(
            run_id,
            task.key,
            status=status,
            ended_at=_utcnow(),
            error=error,
            task_values=json.dumps(values),
        )
        _notify(progress, task.key, status, error or "")
        return status, values, error

    def _attempt(
        self,
        run_id: int,
        task: TaskSpec,
        params: dict[str, Any],
        upstream: dict[str, dict[str, Any]],
        context: dict[str, Any],
        log: Path,
    ) -> Outcome:
        script = task.script and str((self.ws.project.directory / task.script).resolve())
        attempt = AttemptSpec(
            task=task.key,
            python=task.python,
            script=script,
            parameters=params,
            upstream_values=upstream,
            context={**context, "task": task.key},
            project_dir=str(self.ws.project.directory),
            target=self.ws.target.name,
            timeout_s=task.timeout_s,
        )
        if self.spec(context["job"]).executor == "ray":
            from lakeforge.jobs._ray import run_on_ray

            outcome, output = run_on_ray(attempt, self.ws.target, run_id)
            with log.open("a") as out:
                out.write(output)
            return outcome
        with log.open("a") as out:
            return run_attempt(attempt, out, lambda: self._cancel_requested(run_id))

    def _task_update(self, run_id: int, task: str, **values: Any) -> None:
        with self.ws.state.connect_engine().begin() as conn:
            conn.execute(
                update(task_runs)
                .where(task_runs.c.run_id == run_id, task_runs.c.task == task)
                .values(**values)
            )

    def _finish(self, run_id: int, states: dict[str, str]) -> JobRun:
        if any(s == "canceled" for s in states.values()):
            status = "canceled"
        elif any(s in FAILED for s in states.values()):
            status = "failed"
        else:
            status = "succeeded"
        failed = [k for k, s in states.items() if s in FAILED]
        error = f"failed task(s): {', '.join(failed)}" if failed else None
        with self.ws.state.connect_engine().begin() as conn:
            conn.execute(
                update(job_runs)
                .where(job_runs.c.id == run_id)
                .values(status=status, ended_at=_utcnow(), error=error)
            )
            job = conn.execute(select(job_runs.c.job).where(job_runs.c.id == run_id)).scalar()
            Outbox(self.ws.state).emit(
                JOB_FINISHED,
                str(job),
                {"run_id": run_id, "status": status, "tasks": states},
                conn=conn,
            )
        return self.get(run_id)


def _dead_runner(runner: str | None, host: str) -> bool:
    if not runner or ":" not in runner:
        return False
    runner_host, _, pid = runner.rpartition(":")
    if runner_host != host or not pid.isdigit():
        return False  # another machine's runner: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


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
