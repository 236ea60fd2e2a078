"""The Ray executor on a real local Ray cluster: task values, timeouts and cancel."""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge.jobs import JobRunner
from lakeforge.jobs._ray import shutdown
from tests.conftest import process_gone as gone

pytestmark = pytest.mark.slow

PIPELINES = """
import os, subprocess, time
from pathlib import Path
from lakeforge.jobs import task_values

def where():
    return {"pid": os.getpid(), "ray_worker_parent": os.getppid()}

def double():
    return {"twice": task_values("first")["pid"] * 2}

def hang(pid_file):
    child = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(60)
"""

PROJECT = """
name: rayproj
targets:
  dev: {{}}
jobs:
  on_ray:
    executor: ray
    tasks:
      - {{key: first, python: pipelines:where}}
      - {{key: second, python: pipelines:double, depends_on: [first]}}
  slow_on_ray:
    executor: ray
    tasks:
      - {{key: hang, python: pipelines:hang, parameters: {{pid_file: "{tmp}/ray-child.pid"}}, timeout_s: 5}}  # room to start on a busy machine
  cancel_on_ray:
    executor: ray
    tasks:
      - {{key: hang, python: pipelines:hang, parameters: {{pid_file: "{tmp}/ray-cancel.pid"}}}}
"""


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    yield
    shutdown()  # stops the local Ray cluster the tests started


@pytest.fixture
def ray_project(tmp_path: Path) -> Path:
    folder = tmp_path / "rayproj"
    folder.mkdir()
    (folder / "pipelines.py").write_text(textwrap.dedent(PIPELINES))
    (folder / "lakeforge.yaml").write_text(PROJECT.format(tmp=tmp_path))
    return folder


def test_tasks_run_on_ray_workers_and_pass_values(ray_project: Path) -> None:
    with lakeforge.connect("dev", project_dir=ray_project) as ws:
        run = JobRunner(ws).run("on_ray")
    assert run is not None and run.status == "succeeded", run
    first = run.tasks["first"].values
    assert first["ray_worker_parent"] != os.getpid()  # supervised by a Ray worker, not us
    assert run.tasks["second"].values == {"twice": first["pid"] * 2}
    assert "attempt of first" in Path(run.tasks["first"].log_path or "").read_text()


def test_a_timeout_on_ray_kills_the_task_and_its_children(
    ray_project: Path, tmp_path: Path
) -> None:
    with lakeforge.connect("dev", project_dir=ray_project) as ws:
        run = JobRunner(ws).run("slow_on_ray")
    assert run is not None and run.tasks["hang"].status == "timed_out"
    time.sleep(0.2)
    assert gone(int((tmp_path / "ray-child.pid").read_text()))


def test_cancel_reaches_the_ray_worker(ray_project: Path, tmp_path: Path) -> None:
    result = {}

    def run_it() -> None:
        with lakeforge.connect("dev", project_dir=ray_project) as ws:
            result["run"] = JobRunner(ws).run("cancel_on_ray")

    thread = threading.Thread(target=run_it)
    thread.start()
    pid_file = tmp_path / "ray-cancel.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with lakeforge.connect("dev", project_dir=ray_project) as ws:
        runner = JobRunner(ws)
        runner.cancel(runner.runs("cancel_on_ray")[0].id)
    thread.join(timeout=60)
    assert result["run"].status == "canceled"
    time.sleep(0.2)
    assert gone(int(pid_file.read_text()))
