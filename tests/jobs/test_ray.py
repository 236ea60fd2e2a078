"""The Ray executor on a real local Ray cluster (one per module): the public executor
conformance suite, and a job whose tasks pass values from one Ray worker to the next."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge.jobs import JobRunner
from lakeforge.jobs.executors import RayExecutor, open_executor
from lakeforge.jobs.executors._ray import shutdown
from lakeforge.testing import ExecutorCheck, parametrize_executor_checks

pytestmark = pytest.mark.slow

PIPELINES = """
import os
from lakeforge.jobs import task_values

def where():
    return {"pid": os.getpid(), "ray_worker_parent": os.getppid()}

def double():
    return {"twice": task_values("first")["pid"] * 2}
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
"""


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    yield
    shutdown()  # stops the local Ray cluster the tests started


@parametrize_executor_checks(RayExecutor.capabilities)
def test_the_ray_executor_passes_the_conformance_suite(
    ray_project: Path, check: ExecutorCheck
) -> None:
    with lakeforge.connect("dev", project_dir=ray_project) as ws:
        check(lambda: open_executor("ray", ws.target))


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
    assert "attempt 1 of first" in Path(run.tasks["first"].log_path or "").read_text()
