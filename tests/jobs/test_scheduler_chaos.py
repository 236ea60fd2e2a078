"""Two schedulers on PostgreSQL, killed with kill -9 at random points just after each
(simulated) minute: every (job, minute) of 30 one-minute crons runs exactly once."""

from __future__ import annotations

import contextlib
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from lakeforge.state import StateStore

JOBS = 30
MINUTES = 12
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

TASKS = """
import json, os

def mark(out):
    # stdlib only: the task starts in milliseconds
    context = json.loads(os.environ["LAKEFORGE_JOB_CONTEXT"])
    with open(out, "a") as handle:
        handle.write(f"{context['job']} {context['trigger']['scheduled_for']}\\n")
"""

SCHEDULER = """
import sys, time
from datetime import datetime, timedelta
from pathlib import Path

import lakeforge
from lakeforge.jobs import Scheduler

project, clock, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
start = datetime.fromisoformat(sys.argv[4])

def now():
    return start + timedelta(seconds=float(clock.read_text()))

with lakeforge.connect("dev", project_dir=project) as ws:
    scheduler = Scheduler(ws, clock=now, jobs=list(ws.project.config.jobs))
    while not stop.exists():
        scheduler.tick()
        time.sleep(0.02)
    scheduler.release()
    scheduler.wait()
"""


def project(folder: Path, state_url: str, marks: Path) -> Path:
    folder.mkdir()
    (folder / "tasks.py").write_text(textwrap.dedent(TASKS))
    jobs = "".join(
        f"  j{i:02d}:\n"
        '    schedule: {cron: "* * * * *", catch_up: all}\n'
        "    max_concurrent_runs: 100\n"
        f'    tasks: [{{key: mark, python: "tasks:mark", parameters: {{out: "{marks}"}}}}]\n'
        for i in range(JOBS)
    )
    (folder / "lakeforge.yaml").write_text(
        f"name: chaos\ntargets:\n  dev: {{state_store: '{state_url}'}}\njobs:\n{jobs}"
    )
    return folder


def set_clock(clock: Path, seconds: float) -> None:
    tmp = clock.with_suffix(".tmp")
    tmp.write_text(str(seconds))
    tmp.replace(clock)


def wait_for(condition: object, what: str, bound_s: float) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {bound_s:g} s for {what}")
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.postgres
def test_cron_firings_survive_random_kill_9_of_two_schedulers(tmp_path: Path, pg_url: str) -> None:
    marks, clock, stop = tmp_path / "marks.txt", tmp_path / "clock", tmp_path / "stop"
    folder = project(tmp_path / "chaos", pg_url, marks)
    (tmp_path / "scheduler.py").write_text(textwrap.dedent(SCHEDULER))
    set_clock(clock, 1)
    store = StateStore(pg_url)
    store.migrate()
    store.dispose()
    engine = sa.create_engine(pg_url)

    def scalar(sql: str) -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar() or 0)

    log = (tmp_path / "schedulers.log").open("ab")

    def spawn() -> subprocess.Popen[bytes]:
        args = [str(folder), str(clock), str(stop), START.isoformat()]
        return subprocess.Popen(
            [sys.executable, str(tmp_path / "scheduler.py"), *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )

    schedulers = [spawn(), spawn()]
    try:
        wait_for(
            lambda: scalar("SELECT count(*) FROM trigger_state") == JOBS,
            "the first sight of every schedule",
            bound_s=180,
        )
        rng = random.Random(11)
        for minute in range(1, MINUTES + 1):
            set_clock(clock, minute * 60 + 0.5)  # just after the minute
            time.sleep(rng.uniform(0.02, 0.5))
            victim = rng.randrange(len(schedulers))
            schedulers[victim].kill()  # kill -9 of the scheduler process alone
            schedulers[victim].wait()
            schedulers[victim] = spawn()
            time.sleep(rng.uniform(0.2, 1.5))
        set_clock(clock, MINUTES * 60 + 45)  # past any lease a killed leader held
        progress: list[tuple[int, int, int]] = []

        def settled() -> bool:
            """Every run ended, or nothing moved for 20 s (the assertions say what is off)."""
            progress.append(
                (
                    scalar("SELECT count(*) FROM trigger_fires"),
                    scalar("SELECT count(*) FROM job_runs WHERE status IN ('queued', 'running')"),
                    scalar("SELECT count(*) FROM task_runs WHERE status != 'pending'"),
                )
            )
            fired, active, _ = progress[-1]
            return (fired == JOBS * MINUTES and not active) or progress[-100:] == [
                progress[-1]
            ] * 100

        wait_for(settled, "the schedulers to settle", bound_s=150)
        stop.touch()
        for process in schedulers:
            process.wait(timeout=60)
    finally:
        for process in schedulers:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
            process.wait()
        log.close()

    due = {
        (f"j{i:02d}", (START + timedelta(minutes=m)).isoformat())
        for i in range(JOBS)
        for m in range(1, MINUTES + 1)
    }
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT r.job, f.fire_key, r.status FROM trigger_fires f "
                "JOIN job_runs r ON r.id = f.run_id"
            )
        ).all()
        runs = scalar("SELECT count(*) FROM job_runs")
        stuck = scalar("SELECT count(*) FROM job_runs WHERE status IN ('queued', 'running')")
    engine.dispose()
    fired = {(job, key.removeprefix("cron:")) for job, key, _ in rows}
    assert not due - fired, f"lost firings: {sorted(due - fired)[:5]}"
    assert fired == due and len(rows) == len(due) == runs  # one run per firing, no other
    assert not stuck, f"{stuck} run(s) never ended"
    starts = Counter(tuple(line.split(" ")) for line in marks.read_text().splitlines())
    doubled = [key for key, count in starts.items() if count > 1]
    assert not doubled, f"tasks that ran twice: {doubled[:5]}"
    statuses = Counter(status for _, _, status in rows)
    assert set(statuses) <= {"succeeded", "failed"}, statuses
    succeeded = {(job, key.removeprefix("cron:")) for job, key, s in rows if s == "succeeded"}
    assert succeeded <= set(starts), "a run recorded as succeeded never ran its task"
    assert statuses["succeeded"] >= len(due) // 2, statuses  # most ran to the end
