"""Running jobs: recording, admitting (concurrency limits), cancelling and repairing runs,
with their history in the state store. A run's DAG is executed by ``_execution``, each
task attempt on its executor (``executors``: a subprocess by default).

A run follows the spec and runs the code the target deployed (see ``_source``), and
records which deployment and commit that was.

On a recoverable executor (``local``) a task's process group is recorded before the task
starts, the process dies with its runner, and its outcome is written to a file before it
exits: a runner killed at any point leaves nothing running and loses no finished task
(see ``_recovery``)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select, update

from lakeforge.errors import LakeforgeError
from lakeforge.jobs._errors import JobError
from lakeforge.jobs._execution import Execution, ProgressCallback
from lakeforge.jobs._history import (
    JobRun,
    close_run,
    read_run,
    record_run,
    refuse_run,
    utcnow,
)
from lakeforge.jobs._recovery import adopt_orphans, recover_orphans
from lakeforge.jobs._source import JobSource, Sources
from lakeforge.project import JobSpec
from lakeforge.state import job_runs, job_settings, task_runs, upsert

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

_POLL_S = 0.2
RUNNER = f"{socket.gethostname()}:{os.getpid()}"


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
        """Run ``run_id`` with its tasks, in the job's DAG order."""
        with self.ws.state.connect_engine().connect() as conn:
            run = read_run(conn, run_id)
        if run is None:
            raise JobError(f"no job run {run_id} in target {self.ws.target.name!r}")
        return run

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
            tasks=spec.order(),
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

    def _execute(
        self, run_id: int, source: JobSource, todo: set[str], progress: ProgressCallback | None
    ) -> JobRun:
        with self.ws.state.connect_engine().connect() as conn:
            info = conn.execute(
                select(job_runs.c.trigger_info).where(job_runs.c.id == run_id)
            ).scalar()
        execution = Execution(
            self.ws,
            self.get(run_id),
            source,
            log_dir=self.log_root / str(run_id),
            max_parallel=self.max_parallel,
            progress=progress,
        )
        return self._finish(run_id, execution.execute(todo, json.loads(info or "{}")))

    def _finish(self, run_id: int, states: dict[str, str]) -> JobRun:
        with self.ws.state.connect_engine().begin() as conn:
            job = conn.execute(select(job_runs.c.job).where(job_runs.c.id == run_id)).scalar()
            close_run(conn, self.ws.state, run_id, str(job), states)
        return self.get(run_id)
