"""Executors as plugins: the registry by name (built in and entry points), the local
executor against the public conformance suite, and a third executor in one module."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.errors import ConfigError
from lakeforge.jobs import JobError, JobRunner
from lakeforge.jobs._execution import CancelRequested
from lakeforge.jobs.executors import (
    ExecutorCapabilities,
    LocalExecutor,
    executor_names,
    open_executor,
)
from lakeforge.project import Target
from lakeforge.testing import ExecutorCheck, executor_checks, parametrize_executor_checks

# The example in docs/contributing.md, installed below as a plugin package.
PLUGIN = (Path(__file__).parents[2] / "examples" / "executor_backend.py").read_text()

PROJECT = """
name: execproj
targets:
  dev: {{}}
jobs:
  plugged:
    executor: {executor}
    tasks:
      - {{key: one, python: tasks:one}}
      - {{key: two, python: tasks:one, executor: local, depends_on: [one]}}
"""


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    (tmp_path / "lakeforge.yaml").write_text("name: p\ntargets:\n  dev: {}\n")
    with lakeforge.connect("dev", project_dir=tmp_path) as ws:
        yield ws.target


@pytest.mark.slow  # the timeout check waits its 5 s
@parametrize_executor_checks(LocalExecutor.capabilities)
def test_the_local_executor_passes_the_conformance_suite(
    target: Target, check: ExecutorCheck
) -> None:
    check(lambda: open_executor("local", target))


def test_capabilities_select_the_checks() -> None:
    every = dict(executor_checks(ExecutorCapabilities(recoverable=True)))
    remote = dict(executor_checks(ExecutorCapabilities()))
    assert set(every) - set(remote) == {
        "check_outcome_is_recorded_for_recovery",
        "check_dead_runner_leaves_nothing_recovery_cannot_kill",
    }


def project(folder: Path, executor: str) -> Path:
    folder.mkdir()
    (folder / "tasks.py").write_text("def one():\n    return {'ok': 1}\n")
    (folder / "lakeforge.yaml").write_text(PROJECT.format(executor=executor))
    return folder


def test_an_unknown_executor_is_refused_when_the_project_loads(
    tmp_path: Path, target: Target
) -> None:
    with pytest.raises(ConfigError, match=r"unknown executor 'dask' \(executors: local, ray;"):
        lakeforge.Project.load(project(tmp_path / "p", "dask"))
    with pytest.raises(JobError, match=r"unknown executor 'dask' \(executors: local, ray\)"):
        open_executor("dask", target)


@pytest.fixture
def serial_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package declaring the ``serial`` executor: one module, one entry point."""
    site = tmp_path / "site"
    info = site / "lf_serial-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "lf_serial.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lf-serial\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[lakeforge.executors]\nserial = lf_serial:SerialExecutor\n"
    )
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.usefixtures("serial_plugin")
def test_a_third_executor_is_one_module_and_one_entry_point(tmp_path: Path) -> None:
    assert executor_names() == ["local", "ray", "serial"]
    with lakeforge.connect("dev", project_dir=project(tmp_path / "p", "serial")) as ws:
        run = JobRunner(ws).run("plugged")
        assert run is not None and run.status == "succeeded", run
        assert run.tasks["one"].values == {"ok": 1} and run.tasks["two"].values == {"ok": 1}
        assert type(open_executor("serial", ws.target)).__name__ == "SerialExecutor"


def test_the_runners_cancel_check_travels_by_pickle(jobs_ws: Workspace) -> None:
    runner = JobRunner(jobs_ws)
    with jobs_ws.state.connect_engine().begin() as conn:
        run_id = runner.record(conn, "plugged")
    assert run_id is not None
    check = CancelRequested(jobs_ws.target.state_store_url, run_id, every_s=0)
    assert not check()
    runner.cancel(run_id)
    copy = pickle.loads(pickle.dumps(check))  # a fresh copy, as a remote worker gets it
    assert copy() and check()


@pytest.fixture
def jobs_ws(tmp_path: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=project(tmp_path / "p", "local")) as ws:
        yield ws
