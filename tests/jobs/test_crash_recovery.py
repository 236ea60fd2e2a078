"""The runner under kill -9: its tasks die with it, a finished task keeps its outcome, and
repair after the crash runs exactly one copy of a task."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge.jobs import JobRunner
from lakeforge.jobs import process_exited as process_gone

pytestmark = pytest.mark.slow

TASKS = """
import os, signal, subprocess, time
from pathlib import Path

def long_once(starts, pid_file, child_file):
    with open(starts, "a") as handle:
        handle.write(f"{os.getpid()}\\n")
    if len(Path(starts).read_text().splitlines()) > 1:
        return {"copy": "second"}
    child = subprocess.Popen(["sleep", "300"])  # in the task's process group
    Path(child_file).write_text(str(child.pid))
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(300)

def stop_runner_then_finish(pid_file):
    Path(pid_file).write_text(str(os.getpid()))
    os.kill(os.getppid(), signal.SIGSTOP)  # the runner freezes before it sees this task end
    return {"finished": True}
"""

PROJECT = """
name: crashproj
targets:
  dev: {{}}
jobs:
  long:
    tasks:
      - key: work
        python: tasks:long_once
        parameters: {{starts: "{tmp}/starts.txt", pid_file: "{tmp}/task.pid", child_file: "{tmp}/child.pid"}}
  quick:
    tasks:
      - key: finish
        python: tasks:stop_runner_then_finish
        parameters: {{pid_file: "{tmp}/quick.pid"}}
"""


@pytest.fixture
def crash_project(tmp_path: Path) -> Path:
    folder = tmp_path / "crashproj"
    folder.mkdir()
    (folder / "tasks.py").write_text(textwrap.dedent(TASKS))
    (folder / "lakeforge.yaml").write_text(PROJECT.format(tmp=tmp_path))
    return folder


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Processes a test started or caused; whatever is left is killed afterwards."""
    started: list[int] = []
    yield started
    for pid in started:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], what: str, bound_s: float = 60) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {bound_s:g} s for {what}")
        time.sleep(0.05)


def lakeforge_cli(project: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from lakeforge.cli import main; main(sys.argv[1:])",
            *("--project-dir", str(project), *args),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def read_pid(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().strip() != "", f"{path.name}")
    return int(path.read_text())


def test_a_killed_runner_takes_its_task_along_and_repair_runs_one_copy(
    crash_project: Path, tmp_path: Path, pids: list[int]
) -> None:
    runner = lakeforge_cli(crash_project, "run", "long")
    pids.append(runner.pid)
    task, grandchild = read_pid(tmp_path / "task.pid"), read_pid(tmp_path / "child.pid")
    pids += [task, grandchild]
    runner.kill()  # kill -9 of the runner alone: its task is in a process group of its own
    runner.wait()
    wait_for(lambda: process_gone(task), f"task process {task} to die with its runner")
    with lakeforge.connect("dev", project_dir=crash_project) as ws:
        jobs = JobRunner(ws)
        [run] = jobs.runs("long")
        assert run.status == "running"  # nobody looked yet
        assert jobs.recover_orphans() == [run.id]
        crashed = jobs.get(run.id)
        assert crashed.status == "failed" and "died" in (crashed.error or "")
        assert crashed.tasks["work"].status == "failed"
        # recovery killed what was left of the task's process group
        wait_for(lambda: process_gone(grandchild), f"the task's child {grandchild} to be killed")
    repair = lakeforge_cli(crash_project, "jobs", "repair", str(run.id))
    assert repair.wait(timeout=120) == 0
    with lakeforge.connect("dev", project_dir=crash_project) as ws:
        repaired = JobRunner(ws).get(run.id)
    assert repaired.status == "succeeded"
    assert repaired.tasks["work"].values == {"copy": "second"}
    assert len((tmp_path / "starts.txt").read_text().splitlines()) == 2  # one start each


def test_repair_of_a_run_whose_runner_died_recovers_it_first(
    crash_project: Path, tmp_path: Path, pids: list[int]
) -> None:
    runner = lakeforge_cli(crash_project, "run", "long")
    pids.append(runner.pid)
    pids += [read_pid(tmp_path / "task.pid"), read_pid(tmp_path / "child.pid")]
    runner.kill()
    runner.wait()
    with lakeforge.connect("dev", project_dir=crash_project) as ws:
        jobs = JobRunner(ws)
        [run] = jobs.runs("long")
        repaired = jobs.repair(run.id)  # no scheduler tick in between: repair recovers it
    assert repaired.status == "succeeded"
    assert all(process_gone(pid) for pid in pids[1:])
    assert len((tmp_path / "starts.txt").read_text().splitlines()) == 2


def test_a_task_that_ended_before_its_runner_died_keeps_its_outcome(
    crash_project: Path, tmp_path: Path, pids: list[int]
) -> None:
    runner = lakeforge_cli(crash_project, "run", "quick")
    pids.append(runner.pid)
    task = read_pid(tmp_path / "quick.pid")
    # the task has written its result and exited; its runner (stopped) never saw it end
    wait_for(lambda: process_gone(task), f"task process {task} to exit")
    runner.kill()
    runner.wait()
    with lakeforge.connect("dev", project_dir=crash_project) as ws:
        jobs = JobRunner(ws)
        [run] = jobs.runs("quick")
        assert jobs.recover_orphans() == [run.id]
        recovered = jobs.get(run.id)
    assert recovered.tasks["finish"].status == "succeeded", recovered.tasks["finish"]
    assert recovered.tasks["finish"].values == {"finished": True}
    assert recovered.status == "succeeded" and recovered.error is None
    with lakeforge.connect("dev", project_dir=crash_project) as ws:
        [event] = ws.events.list(type="job.finished")
    assert event.payload == {
        "run_id": run.id,
        "status": "succeeded",
        "tasks": {"finish": "succeeded"},
    }
