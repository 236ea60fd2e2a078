"""A run's records in the state store: recording a run (with the firing that started it),
reading it back, where a task attempt leaves its outcome, and closing a run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from lakeforge._identity import current_user
from lakeforge.errors import LakeforgeError
from lakeforge.events import JOB_FINISHED, Outbox
from lakeforge.state import StateStore, as_utc, job_runs, task_runs, trigger_fires

TERMINAL = {"succeeded", "failed", "timed_out", "canceled", "skipped"}
FAILED = {"failed", "timed_out"}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TaskRun:
    task: str
    status: str
    attempts: int  # counted across the run's repairs
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
    tasks: dict[str, TaskRun]  # in the job's DAG order (dependencies first)
    deployment: int | None = None  # the deployment whose code ran; None: the working copy
    commit: str | None = None  # the git commit of that code


def read_run(conn: Connection, run_id: int) -> JobRun | None:
    """Run ``run_id`` with its tasks, or None if there is none."""
    row = conn.execute(select(job_runs).where(job_runs.c.id == run_id)).first()
    if row is None:
        return None
    tasks = conn.execute(
        select(task_runs).where(task_runs.c.run_id == run_id).order_by(task_runs.c.id)
    ).all()
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


def record_run(
    conn: Connection,
    *,
    job: str,
    tasks: list[str],
    parameters: dict[str, Any],
    trigger: str,
    trigger_info: dict[str, Any] | None,
    fire_key: str | None,
    runner: str,
    deployment_id: int | None = None,
    code_commit: str | None = None,
) -> int | None:
    """Record a queued run in ``conn``'s transaction, its ``tasks`` in the order listed
    (runs read them back so); its id, or None when ``fire_key``
    (a scheduled time, an event) already fired for ``job``. ``deployment_id`` names the
    deployment whose code it runs (None: the working copy), ``code_commit`` its commit."""
    if fire_key is not None:
        row = {"job": job, "fire_key": fire_key, "fired_at": utcnow()}
        if conn.execute(_insert_new_fire(conn, row)).first() is None:
            return None
    key = conn.execute(
        insert(job_runs).values(
            job=job,
            status="queued",
            trigger=trigger,
            trigger_info=json.dumps(trigger_info or {}, default=str),
            parameters=json.dumps(parameters),
            created_at=utcnow(),
            cancel_requested=False,
            actor=current_user(),
            runner=runner,
            deployment_id=deployment_id,
            code_commit=code_commit,
        )
    ).inserted_primary_key
    assert key is not None
    run_id = int(key[0])
    conn.execute(
        insert(task_runs),
        [{"run_id": run_id, "task": t, "status": "pending", "attempts": 0} for t in tasks],
    )
    if fire_key is not None:
        conn.execute(
            update(trigger_fires)
            .where(trigger_fires.c.job == job, trigger_fires.c.fire_key == fire_key)
            .values(run_id=run_id)
        )
    return run_id


def _insert_new_fire(conn: Connection, row: dict[str, Any]) -> Any:
    """INSERT the firing unless its key fired before; RETURNING says which it was."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        new = postgresql.insert(trigger_fires).values(**row).on_conflict_do_nothing()
        return new.returning(trigger_fires.c.job)
    if dialect == "sqlite":
        return (
            sqlite.insert(trigger_fires)
            .values(**row)
            .on_conflict_do_nothing()
            .returning(trigger_fires.c.job)
        )
    raise LakeforgeError(f"the jobs engine supports SQLite and PostgreSQL, not {dialect}")


def result_file(log: Path, attempt: int) -> Path:
    """Where a task's attempt writes its outcome, next to the task's log."""
    return log.with_name(f"{log.stem}.attempt{attempt}.result.json")


def close_run(
    conn: Connection,
    state: StateStore,
    run_id: int,
    job: str,
    states: dict[str, str],
    *,
    error: str | None = None,
) -> str:
    """Record a run's final status from its tasks' (``error`` overrides the failure note)
    and announce it as a ``job.finished`` event, in ``conn``'s transaction."""
    if any(s == "canceled" for s in states.values()):
        status = "canceled"
    elif error is not None or any(s in FAILED for s in states.values()):
        status = "failed"
    else:
        status = "succeeded"
    failed = [k for k, s in states.items() if s in FAILED]
    if error is None and failed:
        error = f"failed task(s): {', '.join(failed)}"
    conn.execute(
        update(job_runs)
        .where(job_runs.c.id == run_id)
        .values(status=status, ended_at=utcnow(), error=error)
    )
    Outbox(state).emit(
        JOB_FINISHED, job, {"run_id": run_id, "status": status, "tasks": states}, conn=conn
    )
    return status


def refuse_run(conn: Connection, state: StateStore, run_id: int, job: str, error: str) -> None:
    """Close a queued run that cannot start (``error`` says why); its tasks are skipped.
    A run no longer queued (another process took it) is left alone."""
    status = conn.execute(select(job_runs.c.status).where(job_runs.c.id == run_id)).scalar()
    if status != "queued":
        return
    tasks = conn.execute(select(task_runs.c.task).where(task_runs.c.run_id == run_id)).scalars()
    states = dict.fromkeys(tasks.all(), "skipped")
    conn.execute(update(task_runs).where(task_runs.c.run_id == run_id).values(status="skipped"))
    close_run(conn, state, run_id, job, states, error=error)
