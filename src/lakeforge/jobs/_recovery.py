"""Runs whose runner process died (kill -9, a crash, the OOM killer).

Recovery kills what is left of the tasks' process groups before anything else, keeps the
outcome a task wrote before it ended, and closes the run: succeeded if every task had
finished, else failed, for ``lakeforge jobs repair`` to rerun the rest. A queued run that
a scheduler fired and never started is not failed: the next scheduler adopts it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import Row, select, update

from lakeforge.jobs._history import TERMINAL, close_run, result_file, utcnow
from lakeforge.jobs._process import kill_recorded_group, process_exited, read_outcome
from lakeforge.state import StateStore, job_runs, task_runs, trigger_fires

DIED = "the process running it died; `lakeforge jobs repair` reruns it"
ACTIVE = ("queued", "running")


def recover_orphans(state: StateStore) -> list[int]:
    """Close the runs whose runner on this host died; their ids."""
    return [
        row.id
        for row in _orphans(state)
        if not _unstarted_firing(row) and _close(state, row.id, row.job, row.runner)
    ]


def adopt_orphans(state: StateStore, runner: str) -> list[int]:
    """Take over, for ``runner``, the queued runs a scheduler on this host fired and died
    before starting; their ids (each taken by one caller only)."""
    adopted = []
    for row in _orphans(state):
        if _unstarted_firing(row):
            with state.connect_engine().begin() as conn:
                taken = conn.execute(
                    update(job_runs)
                    .where(
                        job_runs.c.id == row.id,
                        job_runs.c.runner == row.runner,
                        job_runs.c.status == "queued",
                    )
                    .values(runner=runner)
                ).rowcount
            if taken:
                adopted.append(row.id)
    return adopted


def _unstarted_firing(row: Row[Any]) -> bool:
    return bool(row.status == "queued" and row.fired)


def _orphans(state: StateStore) -> list[Row[Any]]:
    host = socket.gethostname()
    query = (
        select(
            job_runs.c.id,
            job_runs.c.job,
            job_runs.c.status,
            job_runs.c.runner,
            trigger_fires.c.fire_key.is_not(None).label("fired"),
        )
        .outerjoin(trigger_fires, trigger_fires.c.run_id == job_runs.c.id)
        .where(job_runs.c.status.in_(ACTIVE))
        .order_by(job_runs.c.id)
    )
    with state.connect_engine().connect() as conn:
        rows = conn.execute(query).all()
    return [row for row in rows if dead_runner(row.runner, host)]


def _close(state: StateStore, run_id: int, job: str, runner: str) -> bool:
    """Close one orphaned run; False if its tasks are still dying or another process
    closed (or repaired) it first."""
    engine = state.connect_engine()
    with engine.connect() as conn:
        tasks = conn.execute(select(task_runs).where(task_runs.c.run_id == run_id)).all()
    for task in tasks:
        if task.status == "running" and task.process and not kill_recorded_group(task.process):
            return False  # a process of it is still dying: the next recovery tries again
    states: dict[str, str] = {}
    changes: dict[str, dict[str, Any]] = {}
    lost = False  # a task that had not ended, or ended without saying how
    for task in tasks:
        if task.status in TERMINAL:
            states[task.task] = task.status
            continue
        outcome = None
        if task.status == "running" and task.log_path:
            outcome = read_outcome(result_file(Path(task.log_path), task.attempts))
        if outcome is None:
            lost = True
            changes[task.task] = {"status": "failed", "error": "runner died"}
        else:
            changes[task.task] = {
                "status": outcome.status,
                "error": outcome.error,
                "task_values": json.dumps(outcome.values),
            }
        states[task.task] = changes[task.task]["status"]
    with engine.begin() as conn:
        mine = conn.execute(
            update(job_runs)
            .where(
                job_runs.c.id == run_id,
                job_runs.c.runner == runner,
                job_runs.c.status.in_(ACTIVE),
            )
            .values(ended_at=utcnow())
        ).rowcount
        if not mine:
            return False
        for key, values in changes.items():
            conn.execute(
                update(task_runs)
                .where(task_runs.c.run_id == run_id, task_runs.c.task == key)
                .values(**values, ended_at=utcnow())
            )
        close_run(conn, state, run_id, job, states, error=DIED if lost else None)
    return True


def dead_runner(runner: str | None, host: str) -> bool:
    """Whether ``runner`` (``host:pid``) names a process of this host that has exited."""
    if not runner or ":" not in runner:
        return False
    runner_host, _, pid = runner.rpartition(":")
    if runner_host != host or not pid.isdigit():
        return False  # another machine's runner: not ours to judge
    return process_exited(int(pid))
