"""Deploy-code: ``lakeforge deploy`` snapshots the code at its commit, and the target runs
that snapshot (``lakeforge run``, the scheduler), never the working copy."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from sqlalchemy import select

import lakeforge
from lakeforge import Workspace
from lakeforge.bundle import DeployError, deploy, deployed_jobs
from lakeforge.cli import main
from lakeforge.jobs import JobRunner, Scheduler
from lakeforge.state import deployments
from tests.conftest import git_init

PIPELINES = """
from pathlib import Path

def mark(out):
    with open(out, "a") as handle:
        handle.write("{version}\\n")
"""


def config(tmp: Path, out: str = "marker.txt", function: str = "mark") -> dict[str, object]:
    return {
        "name": "codeproj",
        "targets": {"dev": {}, "prod": {}},
        "tables": {"silver.input": {"columns": "a BIGINT"}},
        "jobs": {
            "stamp": {
                "triggers": [{"type": "table_update", "tables": ["silver.input"]}],
                "tasks": [
                    {
                        "key": "write",
                        "python": f"pipelines:{function}",
                        "parameters": {"out": str(tmp / out)},
                    }
                ],
            }
        },
    }


def write_project(folder: Path, tmp: Path, version: str = "v1", **options: str) -> None:
    (folder / "pipelines.py").write_text(PIPELINES.format(version=version))
    (folder / "lakeforge.yaml").write_text(yaml.safe_dump(config(tmp, **options), sort_keys=False))


def commit(folder: Path, message: str = "change") -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", "commit", "-qam", message], cwd=folder, check=True, env=env)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(autouse=True)
def _user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEFORGE_USER", "alice")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "codeproj"
    folder.mkdir()
    write_project(folder, tmp_path)
    (folder / ".gitignore").write_text(".lakeforge/\n")
    git_init(folder)
    return folder


@pytest.fixture
def ws(project: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=project) as workspace:
        yield workspace


def cli(project: Path, capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), *args])
    out = capsys.readouterr()
    text = out.out + out.err
    assert exit_info.value.code == code, text
    return text


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def recorded(ws: Workspace) -> list[tuple[str | None, bool]]:
    with ws.state.connect_engine().connect() as conn:
        rows = conn.execute(select(deployments).order_by(deployments.c.id)).all()
    return [(row.commit, row.dirty) for row in rows]


@pytest.mark.slow
def test_a_deployed_job_runs_its_deployed_code_until_the_next_deploy(
    project: Path, ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = deploy(ws)
    assert first.code is not None and first.code.commit == recorded(ws)[0][0]
    # the working copy moves on: new code, and the job now writes elsewhere
    write_project(project, tmp_path, version="v2", out="moved.txt")
    out = cli(project, capsys, "run", "stamp", "-t", "dev")
    assert "working copy" not in out
    assert lines(tmp_path / "marker.txt") == ["v1"] and lines(tmp_path / "moved.txt") == []

    # the scheduler fires the deployed job on its (deployed) trigger: still the old code
    sched = Scheduler(ws, background=False)
    assert sched.tick() == []  # first look at the table
    ws.tables.write("dev.silver.input", pa.table({"a": [1]}), mode="append")
    [firing] = sched.tick()
    assert JobRunner(ws).get(firing.run_id or 0).status == "succeeded"
    assert lines(tmp_path / "marker.txt") == ["v1", "v1"]

    new_commit = commit(project)  # committed, but not deployed: nothing changes
    cli(project, capsys, "run", "stamp", "-t", "dev")
    assert lines(tmp_path / "marker.txt") == ["v1", "v1", "v1"]

    with lakeforge.connect("dev", project_dir=project) as fresh:  # loads the edited yaml
        again = deploy(fresh)
    assert again.code is not None and again.code.commit == new_commit
    assert again.code.previous == first.code.label
    cli(project, capsys, "run", "stamp", "-t", "dev")
    assert lines(tmp_path / "moved.txt") == ["v2"]
    assert lines(tmp_path / "marker.txt") == ["v1", "v1", "v1"]


def test_an_undeployed_job_runs_the_working_copy_in_dev_and_is_refused_in_prod(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(project, capsys, "run", "stamp", "-t", "dev")
    assert "running the working copy: job stamp is not deployed to dev" in out
    assert lines(tmp_path / "marker.txt") == ["v1"]
    out = cli(project, capsys, "run", "stamp", "-t", "prod", code=1)
    assert "job 'stamp' is not deployed to target prod" in out
    assert "lakeforge deploy -t prod" in out
    assert lines(tmp_path / "marker.txt") == ["v1"]


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("biuld", "jobs.stamp.tasks.write.python: module 'pipelines' has no function 'biuld'"),
        ("PIPELINE_NAME", "jobs.stamp.tasks.write.python: module 'pipelines' has no function"),
    ],
)
def test_deploy_refuses_a_task_function_that_does_not_import_and_changes_nothing(
    project: Path, tmp_path: Path, function: str, message: str
) -> None:
    write_project(project, tmp_path, function=function)
    (project / "pipelines.py").write_text(PIPELINES.format(version="v1") + "PIPELINE_NAME = 1\n")
    with lakeforge.connect("dev", project_dir=project) as ws:
        with pytest.raises(DeployError, match=re.escape(message)):
            deploy(ws)
        assert deployed_jobs(ws) == {} and recorded(ws) == []
        assert not ws.tables.exists("dev.silver.input")
        home = Path(ws.target.root) / "deployments"
        assert not home.exists() or list(home.iterdir()) == []


def test_deploy_checks_modules_scripts_and_trigger_tables(project: Path, tmp_path: Path) -> None:
    settings = config(tmp_path)
    settings["tables"] = {}
    settings["jobs"]["stamp"]["tasks"] += [  # type: ignore[index]
        {"key": "imports", "python": "nowhere.pipelines:run"},
        {"key": "notify", "script": "scripts/notify.sh"},
    ]
    (project / "lakeforge.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    with lakeforge.connect("dev", project_dir=project) as ws:
        with pytest.raises(DeployError) as failure:
            deploy(ws)
        text = failure.value.message
        assert "jobs.stamp.tasks.imports.python: cannot import module 'nowhere.pipelines'" in text
        assert "jobs.stamp.tasks.notify.script: scripts/notify.sh is not in the deployed code" in (
            text
        )
        assert "jobs.stamp.triggers[0].tables: dev.silver.input does not exist" in text
        assert deployed_jobs(ws) == {}


def test_a_dirty_tree_is_refused_on_prod_unless_allowed_and_recorded_dirty(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_project(project, tmp_path, version="v2")  # uncommitted change to a tracked file
    out = cli(project, capsys, "deploy", "-t", "prod", code=1)
    assert "uncommitted changes" in out and "--allow-dirty" in out
    with lakeforge.connect("prod", project_dir=project) as prod:
        assert recorded(prod) == [] and deployed_jobs(prod) == {}
    cli(project, capsys, "deploy", "-t", "prod", "--allow-dirty")
    with lakeforge.connect("prod", project_dir=project) as prod:
        [(_, dirty)] = recorded(prod)
        assert dirty
        run = JobRunner(prod).run("stamp")
        assert run is not None and run.status == "succeeded"
    assert lines(tmp_path / "marker.txt") == ["v2"]  # the working tree was snapshotted
    cli(project, capsys, "deploy", "-t", "dev")  # development mode deploys a dirty tree
    with lakeforge.connect("dev", project_dir=project) as dev:
        assert [dirty for _, dirty in recorded(dev)] == [True]


@pytest.mark.slow
def test_runs_show_the_deployed_commit_and_training_lineage_names_it(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pipelines.py").write_text(
        PIPELINES.format(version="v1")
        + "\n\ndef train(out):\n"
        + "    import lakeforge\n"
        + "    with lakeforge.connect().start_run('train', autolog=False) as run:\n"
        + "        run.log_metrics({'mae': 1.0})\n"
        + "    return {'mlflow_run': run.run_id}\n"
    )
    write_project_file = config(tmp_path, function="train")
    (project / "lakeforge.yaml").write_text(yaml.safe_dump(write_project_file, sort_keys=False))
    deployed = commit(project, "train task")
    cli(project, capsys, "deploy", "-t", "dev")
    (project / "notes.txt").write_text("later work")
    subprocess.run(["git", "add", "notes.txt"], cwd=project, check=True)
    later = commit(project, "later")  # HEAD moves past the deployed commit
    assert later != deployed
    with lakeforge.connect("dev", project_dir=project) as ws:
        run = JobRunner(ws).run("stamp")
        assert run is not None and run.status == "succeeded", run
        assert run.commit == deployed
        mlflow_run = run.tasks["write"].values["mlflow_run"]
        from mlflow import MlflowClient

        tags = MlflowClient(ws.target.mlflow_tracking_uri).get_run(mlflow_run).data.tags
        assert tags["lakeforge.git.commit"] == deployed
        assert tags["lakeforge.git.dirty"] == "false"
        assert tags["lakeforge.deployment"] == str(run.deployment)
    out = cli(project, capsys, "jobs", "runs", "-t", "dev")
    assert deployed[:12] in out


def test_undeployed_runs_record_the_working_copy_commit(ws: Workspace, project: Path) -> None:
    run = JobRunner(ws).run("stamp")
    assert run is not None and run.deployment is None
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, check=True, capture_output=True, text=True
    ).stdout.strip()
    assert run.commit == head
    assert run.created_at <= datetime.now(UTC)


def test_a_snapshot_changed_after_deploy_is_refused(ws: Workspace) -> None:
    result = deploy(ws)
    assert result.code is not None
    code = Path(result.code.path) / "code" / "pipelines.py"
    code.chmod(0o644)
    code.write_text(PIPELINES.format(version="tampered"))
    run = JobRunner(ws).run("stamp")  # recorded, then refused: the run says why
    assert run is not None and run.status == "failed"
    assert "changed since it was deployed" in (run.error or "")
    assert {t.status for t in run.tasks.values()} == {"skipped"}


def test_deploy_reports_each_step_to_its_progress_callback(ws: Workspace) -> None:
    steps: list[str] = []
    deploy(ws, progress=steps.append)
    assert steps[0] == "snapshotting the code"
    assert steps[1].startswith("validating the jobs' references in the files git tracks at ")
    assert steps[2:4] == ["create table dev.silver.input", "create job stamp"]
    assert steps[4].startswith("recording code ")
