"""What ``lakeforge jobs logs`` and ``jobs runs`` show: attempts numbered across repairs,
tasks in DAG order, task values."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

import lakeforge
from lakeforge.cli import main
from lakeforge.jobs import JobRunner

PIPELINES = """
def build(rows):
    print("building", rows)
    return {"rows": rows}

def maybe_fail(fail):
    print("checking, fail =", fail)
    if fail:
        raise RuntimeError("asked to fail")
    return {"fixed": True}
"""

# declared neither alphabetically nor in dependency order
PROJECT = """
name: outproj
targets:
  dev: {}
jobs:
  pipeline:
    parameters: {fail: true}
    tasks:
      - {key: b_check, python: pipelines:maybe_fail, depends_on: [c_build], parameters: {fail: "{{parameters.fail}}"}}
      - {key: c_build, python: pipelines:build, parameters: {rows: 3}}
      - {key: a_report, python: pipelines:build, depends_on: [b_check], parameters: {rows: 1}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "outproj"
    folder.mkdir()
    (folder / "pipelines.py").write_text(textwrap.dedent(PIPELINES))
    (folder / "lakeforge.yaml").write_text(PROJECT)
    return folder


def cli(project: Path, capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), *args])
    out = capsys.readouterr()
    assert exit_info.value.code == code, out.out + out.err
    return out.out


def test_attempts_are_numbered_across_repairs(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with lakeforge.connect("dev", project_dir=project) as ws:
        runner = JobRunner(ws)
        first = runner.run("pipeline")
        assert first is not None and first.tasks["b_check"].status == "failed"
        assert first.tasks["b_check"].attempts == 1
        repaired = runner.repair(first.id, parameters={"fail": False})
    assert repaired.status == "succeeded"
    assert repaired.tasks["b_check"].attempts == 2  # the repair's attempt is the second
    assert repaired.tasks["c_build"].attempts == 1  # not rerun
    assert repaired.tasks["a_report"].attempts == 1  # skipped, then run once
    log = Path(repaired.tasks["b_check"].log_path or "").read_text()
    assert re.findall(r"attempt (\d+) of b_check", log) == ["1", "2"]
    output = cli(project, capsys, "jobs", "logs", str(first.id), "--task", "b_check")
    assert "(succeeded, 2 attempt(s))" in output
    assert "attempt 1 of b_check" in output and "attempt 2 of b_check" in output


def test_logs_list_tasks_in_dag_order(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(project, capsys, "jobs", "run", "pipeline", "-p", "fail=false")
    output = cli(project, capsys, "jobs", "logs", "1")
    headers = re.findall(r"(\w+) \(succeeded, 1 attempt\(s\)\)", output)
    assert headers == ["c_build", "b_check", "a_report"]


def test_runs_show_task_values(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli(project, capsys, "jobs", "run", "pipeline", "-p", "fail=false")
    output = cli(project, capsys, "jobs", "runs")
    assert 'c_build={"rows":3}' in output and 'b_check={"fixed":true}' in output
    [run] = json.loads(cli(project, capsys, "jobs", "runs", "--json"))
    assert run["status"] == "succeeded"
    assert list(run["tasks"]) == ["c_build", "b_check", "a_report"]
    assert run["tasks"]["c_build"]["values"] == {"rows": 3}
    assert run["tasks"]["b_check"]["values"] == {"fixed": True}
