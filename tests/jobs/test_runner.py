"""The jobs engine: real subprocess tasks, run history, run_if, retries, values, timeouts,
cancel and repair."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.cli import main
from lakeforge.errors import ConfigError
from lakeforge.jobs import JobError, JobRunner, run_if_met
from lakeforge.jobs import process_exited as process_gone

PIPELINES = """
import os, subprocess, time
from pathlib import Path
from lakeforge.jobs import job_context, task_values

def extract(rows):
    return {"rows": rows}

def flaky(marker):
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("transient failure")
    return {"ok": True}

def transform(rows, factor):
    upstream = task_values("extract")
    assert upstream["rows"] == rows
    return {"total": rows * factor, "run_id": job_context()["run_id"]}

def boom():
    raise ValueError("this task always fails")

def record(path, value):
    Path(path).write_text(str(value))

def spawn_and_hang(pid_file):
    child = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(60)

def sleep_for(seconds, out):
    time.sleep(seconds)
    with open(out, "a") as handle:
        handle.write("done\\n")

def maybe_fail(fail):
    if fail:
        raise RuntimeError("asked to fail")
    return {"fixed": True}
"""

JOBS = """
name: jobsproj
targets:
  dev: {{}}
jobs:
  dag:
    parameters: {{rows: 10}}
    tasks:
      - key: extract
        python: pipelines:extract
        parameters: {{rows: "{{{{parameters.rows}}}}"}}
      - key: flaky
        python: pipelines:flaky
        parameters: {{marker: "{tmp}/flaky-marker"}}
        retries: 2
        retry_backoff_s: 0.05
      - key: transform
        python: pipelines:transform
        depends_on: [extract, flaky]
        parameters: {{rows: "{{{{tasks.extract.rows}}}}", factor: 3}}
      - key: on_failure
        python: pipelines:record
        depends_on: [transform]
        run_if: at_least_one_failed
        parameters: {{path: "{tmp}/on_failure", value: x}}
      - key: report
        python: pipelines:record
        depends_on: [transform, on_failure]
        run_if: all_done
        parameters: {{path: "{tmp}/report", value: "run {{{{job.run_id}}}} on {{{{target}}}}"}}
  hang:
    tasks:
      - key: hang
        python: pipelines:spawn_and_hang
        parameters: {{pid_file: "{tmp}/child.pid"}}
        timeout_s: 60
  timeout:
    tasks:
      - key: slow
        python: pipelines:spawn_and_hang
        parameters: {{pid_file: "{tmp}/timeout-child.pid"}}
        timeout_s: 5  # room for the task to start and spawn its child on a busy machine
  repairable:
    parameters: {{fail: true}}
    tasks:
      - key: first
        python: pipelines:extract
        parameters: {{rows: 1}}
      - key: second
        python: pipelines:maybe_fail
        depends_on: [first]
        parameters: {{fail: "{{{{parameters.fail}}}}"}}
      - key: third
        python: pipelines:extract
        depends_on: [second]
        parameters: {{rows: 3}}
  single:
    max_concurrent_runs: 1
    concurrency_policy: skip
    tasks:
      - {{key: wait, python: pipelines:sleep_for, parameters: {{seconds: 1.5, out: "{tmp}/single.txt"}}}}
  queued:
    max_concurrent_runs: 1
    concurrency_policy: queue
    tasks:
      - {{key: wait, python: pipelines:sleep_for, parameters: {{seconds: 1.0, out: "{tmp}/queued.txt"}}}}
  broken:
    tasks:
      - key: nothing
        python: no_such_module_here:run
  failing:
    tasks:
      - key: boom
        python: pipelines:boom
"""


@pytest.fixture
def jobs_project(tmp_path: Path) -> Path:
    folder = tmp_path / "jobsproj"
    folder.mkdir()
    (folder / "pipelines.py").write_text(textwrap.dedent(PIPELINES))
    (folder / "lakeforge.yaml").write_text(JOBS.format(tmp=tmp_path))
    return folder


@pytest.fixture
def jobs_ws(jobs_project: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=jobs_project) as ws:
        yield ws


def test_a_dag_with_run_if_retries_and_task_values(jobs_ws: Workspace, tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    run = JobRunner(jobs_ws).run("dag", progress=lambda t, s, d: seen.append((t, s)))
    assert run.status == "succeeded", run
    tasks = run.tasks
    assert tasks["flaky"].status == "succeeded" and tasks["flaky"].attempts == 2
    assert tasks["transform"].values == {"total": 30, "run_id": run.id}
    assert tasks["on_failure"].status == "skipped" and not (tmp_path / "on_failure").exists()
    assert tasks["report"].status == "succeeded"
    assert (tmp_path / "report").read_text() == f"run {run.id} on dev"
    assert ("flaky", "failed") in seen and seen[-1] == ("report", "succeeded")
    assert "transient failure" in Path(tasks["flaky"].log_path or "").read_text()
    [event] = jobs_ws.events.list(type="job.finished")
    assert event.payload["run_id"] == run.id and event.payload["status"] == "succeeded"


def test_run_if_rules() -> None:
    assert run_if_met("all_success", ["succeeded", "succeeded"])
    assert not run_if_met("all_success", ["succeeded", "skipped"])
    assert run_if_met("none_failed", ["succeeded", "skipped"])
    assert not run_if_met("none_failed", ["timed_out"])
    assert run_if_met("at_least_one_success", ["failed", "succeeded"])
    assert run_if_met("all_failed", ["failed", "timed_out"])
    assert run_if_met("at_least_one_failed", ["succeeded", "failed"])
    assert run_if_met("all_done", ["canceled"])


def test_a_timeout_kills_the_task_and_its_children(jobs_ws: Workspace, tmp_path: Path) -> None:
    run = JobRunner(jobs_ws).run("timeout")
    assert run.status == "failed" and run.tasks["slow"].status == "timed_out"
    assert "timed out after 5 s" in (run.tasks["slow"].error or "")
    child = int((tmp_path / "timeout-child.pid").read_text())
    time.sleep(0.2)
    assert process_gone(child)


def test_cancel_leaves_no_orphan_processes(jobs_project: Path, tmp_path: Path) -> None:
    results = {}

    def run_it() -> None:
        with lakeforge.connect("dev", project_dir=jobs_project) as ws:
            results["run"] = JobRunner(ws).run("hang")

    thread = threading.Thread(target=run_it)
    thread.start()
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    with lakeforge.connect("dev", project_dir=jobs_project) as other:
        runner = JobRunner(other)
        [active] = runner.runs("hang")
        assert active.status == "running"
        runner.cancel(active.id)
    thread.join(timeout=30)
    assert results["run"].status == "canceled"
    assert results["run"].tasks["hang"].status == "canceled"
    time.sleep(0.2)
    assert process_gone(child)
    with (
        lakeforge.connect("dev", project_dir=jobs_project) as again,
        pytest.raises(JobError, match="only running or queued"),
    ):
        JobRunner(again).cancel(active.id)


def test_repair_reruns_only_what_failed_and_its_dependents(jobs_ws: Workspace) -> None:
    runner = JobRunner(jobs_ws)
    first = runner.run("repairable")
    assert first.status == "failed"
    assert [first.tasks[k].status for k in ("first", "second", "third")] == [
        "succeeded",
        "failed",
        "skipped",
    ]
    repaired = runner.repair(first.id, parameters={"fail": False})
    assert repaired.id == first.id and repaired.status == "succeeded"
    assert repaired.tasks["first"].attempts == 1  # not rerun
    assert repaired.tasks["second"].attempts == 2 and repaired.tasks["second"].values == {
        "fixed": True
    }
    assert repaired.tasks["third"].status == "succeeded"
    with pytest.raises(JobError, match="nothing to repair"):
        runner.repair(first.id)


def test_a_task_that_imports_nothing_fails_clearly(jobs_ws: Workspace) -> None:
    run = JobRunner(jobs_ws).run("broken")
    assert run.status == "failed"
    assert "cannot import module 'no_such_module_here'" in (run.tasks["nothing"].error or "")


def test_unknown_jobs_and_parameters_are_refused(jobs_ws: Workspace) -> None:
    runner = JobRunner(jobs_ws)
    with pytest.raises(JobError, match=r"unknown job 'nope' \(jobs: dag, hang"):
        runner.run("nope")
    with pytest.raises(JobError, match="has no parameter"):
        runner.run("dag", parameters={"colour": "red"})
    with pytest.raises(JobError, match="no job run 999"):
        runner.get(999)


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        (
            "a:\n    tasks:\n      - {key: x, python: m:f, depends_on: [y]}\n",
            "task 'x' depends on unknown task",
        ),
        (
            "a:\n    tasks:\n      - {key: x, python: m:f, depends_on: [y]}\n      - {key: y, python: m:f, depends_on: [x]}\n",
            "dependency cycle: x -> y -> x",
        ),
        (
            "a:\n    schedule: {cron: '61 * * * *'}\n    tasks:\n      - {key: x, python: m:f}\n",
            "cron expression '61 \\* \\* \\* \\*' is not valid",
        ),
        ("a:\n    tasks:\n      - {key: x, python: not-a-callable}\n", "is not 'module:function'"),
        ("a:\n    tasks:\n      - {key: x}\n", "give exactly one of python or script"),
    ],
)
def test_bad_job_specs_fail_when_the_project_loads(tmp_path: Path, jobs: str, message: str) -> None:
    (tmp_path / "lakeforge.yaml").write_text("name: p\ntargets:\n  dev: {}\njobs:\n  " + jobs)
    with pytest.raises(ConfigError, match=message):
        lakeforge.Project.load(tmp_path)


def test_jobs_in_resources_files_are_merged(jobs_project: Path) -> None:
    (jobs_project / "resources").mkdir()
    (jobs_project / "resources" / "extra.yml").write_text(
        "jobs:\n  extra:\n    tasks:\n      - {key: one, python: pipelines:extract, parameters: {rows: 1}}\n"
    )
    project = lakeforge.Project.load(jobs_project)
    assert "extra" in project.config.jobs and "dag" in project.config.jobs


def test_cli_run_runs_logs_pause(jobs_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str, code: int = 0) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(jobs_project), *args])
        out = capsys.readouterr()
        assert exit_info.value.code == code, out.out + out.err
        return out.out + out.err

    output = run("-t", "dev", "run", "dag", "--param", "rows=4")
    assert "succeeded" in output and "flaky" in output
    assert "failed" in run("jobs", "run", "failing", code=1)
    assert "dag" in run("jobs", "runs")
    assert "this task always fails" in run("jobs", "logs", "2")
    assert "paused" in run("jobs", "pause", "dag")
    assert "yes" in run("jobs", "list")
    assert "unpaused" in run("jobs", "unpause", "dag")
    assert "unknown job 'zzz'" in run("jobs", "run", "zzz", code=1)


@pytest.mark.parametrize(
    ("job", "second_status", "finished"), [("single", "skipped", 1), ("queued", "succeeded", 2)]
)
def test_max_concurrent_runs_skips_or_queues(
    jobs_project: Path, tmp_path: Path, job: str, second_status: str, finished: int
) -> None:
    results: list[str] = []

    def run_it() -> None:
        with lakeforge.connect("dev", project_dir=jobs_project) as ws:
            run = JobRunner(ws).run(job)
            assert run is not None
            results.append(run.status)

    first = threading.Thread(target=run_it)
    first.start()
    with lakeforge.connect("dev", project_dir=jobs_project) as ws:
        runner = JobRunner(ws)
        deadline = time.monotonic() + 30
        while (
            not any(r.status == "running" for r in runner.runs(job)) and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        second = runner.run(job)
    first.join(timeout=60)
    assert second is not None and second.status == second_status
    assert results == ["succeeded"]
    assert len((tmp_path / f"{job}.txt").read_text().splitlines()) == finished
