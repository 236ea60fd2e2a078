"""The scheduler, driven by a controllable clock: cron, catch-up, restarts, two schedulers,
table updates, file arrival and registry events."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.events import MODEL_VERSION_CREATED
from lakeforge.jobs import JobRunner, Scheduler

PIPELINES = """
from pathlib import Path
from lakeforge.jobs import job_context

def note(out):
    trigger = job_context()["trigger"]
    with open(out, "a") as handle:
        handle.write(repr(trigger.get("scheduled_for") or trigger.get("kind")) + "\\n")

def validate(model, version, out):
    with open(out, "a") as handle:
        handle.write(f"{model} v{version}\\n")
"""

PROJECT = """
name: sched
targets:
  dev: {{}}
jobs:
  hourly:
    schedule: {{cron: "0 * * * *", timezone: Europe/Paris, catch_up: {catch_up}}}
    tasks:
      - {{key: note, python: pipelines:note, parameters: {{out: "{tmp}/hourly.txt"}}}}
  on_table:
    triggers:
      - {{type: table_update, tables: [dev.silver.input]}}
    tasks:
      - {{key: note, python: pipelines:note, parameters: {{out: "{tmp}/table.txt"}}}}
  on_files:
    triggers:
      - {{type: file_arrival, path: landing, pattern: "*.csv"}}
    tasks:
      - {{key: note, python: pipelines:note, parameters: {{out: "{tmp}/files.txt"}}}}
  after_table_job:
    triggers:
      - {{type: job_finished, jobs: [on_table], status: [succeeded]}}
    tasks:
      - {{key: note, python: pipelines:note, parameters: {{out: "{tmp}/after.txt"}}}}
  validate_new_versions:
    triggers:
      - {{type: model_event, events: [model_version.created], models: ["dev.ml.*"]}}
    tasks:
      - key: validate
        python: pipelines:validate
        parameters:
          model: "{{{{trigger.event.subject}}}}"
          version: "{{{{trigger.event.payload.version}}}}"
          out: "{tmp}/validated.txt"
"""
START = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_project(tmp_path: Path, catch_up: str = "latest") -> Path:
    folder = tmp_path / "sched"
    folder.mkdir()
    (folder / "pipelines.py").write_text(textwrap.dedent(PIPELINES))
    (folder / "lakeforge.yaml").write_text(PROJECT.format(tmp=tmp_path, catch_up=catch_up))
    return folder


@pytest.fixture
def sched_ws(tmp_path: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=make_project(tmp_path)) as ws:
        yield ws


def scheduler(ws: Workspace, clock: Clock, jobs: list[str]) -> Scheduler:
    return Scheduler(ws, clock=clock, background=False, jobs=jobs)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_cron_fires_on_time_and_exactly_once_across_a_restart(
    sched_ws: Workspace, tmp_path: Path
) -> None:
    clock = Clock(START)
    first = scheduler(sched_ws, clock, ["hourly"])
    assert first.tick() == []  # first sight: nothing due yet
    clock.now = START + timedelta(minutes=29)  # 10:59 UTC
    assert first.tick() == []
    clock.now = START + timedelta(minutes=30, seconds=1)  # 11:00:01 UTC = 12:00 in Paris
    [firing] = first.tick()
    assert firing.fire_key == "cron:2026-03-01T11:00:00+00:00" and firing.run_id is not None
    assert lines(tmp_path / "hourly.txt") == ["'2026-03-01T11:00:00+00:00'"]
    assert first.tick() == []  # same minute, same tick again: nothing more
    # a restarted scheduler (new instance, lease taken over after expiry) does not refire it
    first.release()
    restarted = scheduler(sched_ws, clock, ["hourly"])
    assert restarted.tick() == []
    # a crash that lost the cursor: the fire key still prevents a second run of 11:00
    from lakeforge.state import trigger_state

    with sched_ws.state.connect_engine().begin() as conn:
        conn.execute(trigger_state.update().values(cursor=(START).isoformat()))
    assert [f.run_id for f in restarted.tick()] == [None]
    assert len(JobRunner(sched_ws).runs("hourly")) == 1


@pytest.mark.parametrize(("catch_up", "expected"), [("skip", 0), ("latest", 1), ("all", 3)])
def test_missed_runs_follow_the_catch_up_policy(
    tmp_path: Path, catch_up: str, expected: int
) -> None:
    with lakeforge.connect("dev", project_dir=make_project(tmp_path, catch_up)) as ws:
        clock = Clock(START)
        sched = scheduler(ws, clock, ["hourly"])
        sched.tick()
        clock.now = START + timedelta(hours=3, minutes=10)  # down over 11:00, 12:00, 13:00
        sched.tick()
        assert len(JobRunner(ws).runs("hourly")) == expected


def test_a_second_scheduler_waits_for_the_lease(sched_ws: Workspace) -> None:
    clock = Clock(START)
    leader = scheduler(sched_ws, clock, ["hourly"])
    other = scheduler(sched_ws, clock, ["hourly"])
    assert leader.acquire() and not other.acquire()
    clock.now = START + timedelta(seconds=31)  # the leader's lease expired (it died)
    assert other.acquire() and not leader.acquire()


def test_paused_jobs_do_not_fire_and_do_not_pile_up(sched_ws: Workspace) -> None:
    clock = Clock(START)
    sched = scheduler(sched_ws, clock, ["hourly"])
    sched.tick()
    JobRunner(sched_ws).set_paused("hourly", True)
    clock.now = START + timedelta(hours=2)
    assert sched.tick() == []
    JobRunner(sched_ws).set_paused("hourly", False)
    assert sched.tick() == []


def test_a_table_update_fires_after_a_write(sched_ws: Workspace, tmp_path: Path) -> None:
    clock = Clock(START)
    sched = scheduler(sched_ws, clock, ["on_table"])
    assert sched.tick() == []
    sched_ws.tables.write("dev.silver.input", pd.DataFrame({"a": [1]}))
    [firing] = sched.tick()
    assert firing.fire_key == "table:dev.silver.input@v0"
    assert sched.tick() == []
    sched_ws.tables.write("dev.silver.input", pd.DataFrame({"a": [2]}))
    assert [f.fire_key for f in sched.tick()] == ["table:dev.silver.input@v1"]
    assert lines(tmp_path / "table.txt") == ["'table_update'", "'table_update'"]


def test_file_arrival(sched_ws: Workspace, tmp_path: Path) -> None:
    landing = sched_ws.project.directory / "landing"
    landing.mkdir()
    (landing / "old.csv").write_text("a\n1\n")
    os.utime(landing / "old.csv", ns=(10**18, 10**18))  # well in the past (2001)
    sched = scheduler(sched_ws, Clock(START), ["on_files"])
    assert sched.tick() == []
    (landing / "notes.txt").write_text("not a csv")
    assert sched.tick() == []
    (landing / "new.csv").write_text("a\n2\n")
    [firing] = sched.tick()
    run = JobRunner(sched_ws).get(firing.run_id or 0)
    assert run.status == "succeeded"
    assert sched.tick() == []


def test_a_registry_event_triggers_a_validation_job(sched_ws: Workspace, tmp_path: Path) -> None:
    sched = scheduler(sched_ws, Clock(START), ["validate_new_versions"])
    sched_ws.events.emit(MODEL_VERSION_CREATED, "dev.ml.old", {"version": 1})
    assert sched.tick() == []  # events from before the trigger existed do not fire
    sched_ws.events.emit(MODEL_VERSION_CREATED, "dev.ml.delay", {"version": 7})
    sched_ws.events.emit(MODEL_VERSION_CREATED, "prod.ml.other", {"version": 2})  # not matched
    [firing] = sched.tick()
    assert firing.fire_key.startswith("event:")
    assert lines(tmp_path / "validated.txt") == ["dev.ml.delay v7"]
    assert sched.tick() == []


def test_the_scheduler_fires_only_deployed_jobs(sched_ws: Workspace) -> None:
    from lakeforge.bundle import deploy

    sched = Scheduler(sched_ws, clock=Clock(START), background=False)
    assert sched.jobs() == {}
    sched_ws.tables.write("dev.silver.input", pd.DataFrame({"a": [1]}))  # deploy checks it
    deploy(sched_ws)
    assert set(sched.jobs()) == {
        "hourly",
        "on_table",
        "on_files",
        "after_table_job",
        "validate_new_versions",
    }
    # development mode: the deployed schedule starts paused
    assert JobRunner(sched_ws).paused("hourly")
    assert not JobRunner(sched_ws).paused("on_table")


def test_a_finished_job_triggers_the_next(sched_ws: Workspace, tmp_path: Path) -> None:
    sched = scheduler(sched_ws, Clock(START), ["on_table", "after_table_job"])
    sched.tick()
    sched_ws.tables.write("dev.silver.input", pd.DataFrame({"a": [1]}))
    # on_table runs in this tick; its job.finished event fires the next job in the same pass
    assert [f.job for f in sched.tick()] == ["on_table", "after_table_job"]
    assert lines(tmp_path / "after.txt") == ["'job_finished'"]
    assert sched.tick() == []


def test_a_firing_and_its_cursor_are_saved_together(
    sched_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakeforge.jobs import _scheduler

    clock = Clock(START)
    sched = scheduler(sched_ws, clock, ["hourly"])
    sched.tick()
    clock.now = START + timedelta(minutes=30, seconds=1)

    def die(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed before the cursor was saved")

    monkeypatch.setattr(_scheduler, "upsert", die)
    with pytest.raises(RuntimeError, match="killed"):
        sched.tick()
    assert JobRunner(sched_ws).runs("hourly") == []  # nothing half-recorded: it fires again
    monkeypatch.undo()
    [firing] = sched.tick()
    assert firing.run_id is not None
    assert lines(tmp_path / "hourly.txt") == ["'2026-03-01T11:00:00+00:00'"]


def test_a_firing_a_dead_scheduler_never_started_runs_once(
    sched_ws: Workspace, tmp_path: Path
) -> None:
    import socket
    import subprocess

    from sqlalchemy import update

    from lakeforge.state import job_runs

    clock = Clock(START)
    sched = scheduler(sched_ws, clock, ["hourly"])
    sched.tick()
    clock.now = START + timedelta(minutes=30, seconds=1)
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    runner = JobRunner(sched_ws)
    at = "2026-03-01T11:00:00+00:00"
    with sched_ws.state.connect_engine().begin() as conn:  # what a scheduler killed after its
        run_id = runner.record(  # firing's transaction, before it started the run, leaves
            conn,
            "hourly",
            trigger="cron",
            trigger_info={"kind": "cron", "scheduled_for": at},
            fire_key=f"cron:{at}",
        )
        assert run_id is not None
        conn.execute(update(job_runs).values(runner=f"{socket.gethostname()}:{dead.pid}"))
    assert runner.recover_orphans() == []  # left for a scheduler to start, not failed
    assert [f.run_id for f in sched.tick()] == [None]  # 11:00 already fired: no second run
    assert runner.get(run_id).status == "succeeded"  # the orphan was adopted and run
    assert len(runner.runs("hourly")) == 1
    assert lines(tmp_path / "hourly.txt") == [repr(at)]
