"""``lakeforge deploy``: declared tables and jobs made real in a target, with a diff first."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import yaml
from sqlalchemy import select

import lakeforge
from lakeforge import Workspace
from lakeforge.bundle import (
    Change,
    DeployError,
    Drift,
    Plan,
    apply,
    deploy,
    deployed_jobs,
    plan,
    render,
    spec_hash,
)
from lakeforge.cli._context import CliState
from lakeforge.cli._deploy import deploy_command
from lakeforge.jobs import JobRunner
from lakeforge.lakehouse import parse_columns
from lakeforge.project._jobs import JobSpec
from lakeforge.state import deployed_resources, job_settings
from tests.conftest import git_init

CONFIG: dict[str, Any] = {
    "name": "shop",
    "targets": {"dev": {"read_from": ["prod"]}, "prod": {}},
    "tables": {
        "silver.orders": {
            "columns": "id BIGINT, amount DOUBLE, placed_at TIMESTAMPTZ, day DATE",
            "primary_key": ["id"],
            "partition_by": ["day"],
            "comment": "one row per order",
        },
        "gold.revenue": {"columns": "day DATE, revenue DOUBLE"},
    },
    "jobs": {
        "refresh": {"tasks": [{"key": "load", "python": "pipelines:load"}]},
        "retrain": {
            "schedule": {"cron": "0 6 * * *", "timezone": "Europe/Paris"},
            "tasks": [
                {"key": "features", "python": "pipelines:features"},
                {"key": "train", "python": "pipelines:train", "depends_on": ["features"]},
            ],
        },
    },
}


@pytest.fixture(autouse=True)
def _user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEFORGE_USER", "alice")


# The functions the jobs name: deploy imports them from the snapshot it takes.
PIPELINES = "def load():\n    pass\n\n\ndef features():\n    pass\n\n\ndef train():\n    pass\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path, CONFIG)
    (tmp_path / "pipelines.py").write_text(PIPELINES)
    return tmp_path


def write(folder: Path, config: dict[str, Any]) -> None:
    (folder / "lakeforge.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def edited(**changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    config.update(changes)
    return config


@contextmanager
def connect(folder: Path, target: str = "dev") -> Iterator[Workspace]:
    with lakeforge.connect(target, project_dir=folder) as ws:
        yield ws


def summary_of(result: Plan) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.name) for c in result.changes]


def settings(ws: Workspace) -> dict[str, bool]:
    with ws.state.connect_engine().connect() as conn:
        return {r.job: r.paused for r in conn.execute(select(job_settings)).all()}


def test_dev_deploy_creates_tables_and_prefixed_jobs_with_schedules_paused(folder: Path) -> None:
    with connect(folder) as ws:
        result = deploy(ws)
        assert result.applied and not result.drift
        assert summary_of(result) == [
            ("create", "table", "dev.silver.orders"),
            ("create", "table", "dev.gold.revenue"),
            (
                "create",
                "job",
                "refresh",
            ),
            ("create", "job", "retrain"),
        ]
        info = ws.tables.describe("dev.silver.orders")
        assert info.schema.names == ["id", "amount", "placed_at", "day"]
        assert info.primary_keys == ["id"] and info.partition_columns == ["day"]
        assert info.comment == "one row per order"
        assert ws.tables.exists("dev.gold.revenue")
        assert deployed_jobs(ws) == {
            "refresh": "[dev alice] refresh",
            "retrain": "[dev alice] retrain",
        }
        runner = JobRunner(ws)
        assert runner.paused("retrain") and not runner.paused("refresh")
        with ws.state.connect_engine().connect() as conn:
            row = conn.execute(
                select(deployed_resources).where(deployed_resources.c.name == "retrain")
            ).one()
        assert row.deployed_by == "alice"
        assert row.spec_hash == spec_hash(JobSpec.model_validate(CONFIG["jobs"]["retrain"]))

        again = deploy(ws)
        assert not again.has_changes and not again.drift
        assert render(again) == ["no changes"]


def test_changed_tasks_update_keeps_a_users_unpause_and_removed_job_is_deleted(
    folder: Path,
) -> None:
    with connect(folder) as ws:
        deploy(ws)
        JobRunner(ws).set_paused("retrain", False)  # the user unpauses in dev
    jobs = copy.deepcopy(CONFIG["jobs"])
    jobs["retrain"]["tasks"][1]["retries"] = 2
    jobs["retrain"]["schedule"]["cron"] = "0 7 * * *"
    write(folder, edited(jobs=jobs))
    with connect(folder) as ws:
        result = deploy(ws)
        assert [(c.action, c.name, c.fields) for c in result.changes] == [
            ("update", "retrain", ("tasks", "schedule"))
        ]
        assert "~ job retrain (tasks, schedule)" in render(result)
        assert not JobRunner(ws).paused("retrain")
        assert not deploy(ws).has_changes

    del jobs["refresh"]
    write(folder, edited(jobs=jobs))
    with connect(folder) as ws:
        result = deploy(ws)
        assert summary_of(result) == [("delete", "job", "refresh")]
        assert render(result)[1] == "- job refresh"  # after the new code snapshot
        assert deployed_jobs(ws) == {"retrain": "[dev alice] retrain"}
        assert "refresh" not in settings(ws)


def test_a_schedule_added_in_dev_starts_paused(folder: Path) -> None:
    with connect(folder) as ws:
        deploy(ws)
    jobs = copy.deepcopy(CONFIG["jobs"])
    jobs["refresh"]["schedule"] = {"cron": "*/5 * * * *"}
    write(folder, edited(jobs=jobs))
    with connect(folder) as ws:
        result = deploy(ws)
        assert render(result)[1] == "~ job refresh (schedule), paused"
        assert JobRunner(ws).paused("refresh")


def test_another_dev_user_renames_the_deployed_jobs(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(folder) as ws:
        deploy(ws)
    monkeypatch.setenv("LAKEFORGE_USER", "bob")
    with connect(folder) as ws:
        result = deploy(ws)
        assert [(c.name, c.fields) for c in result.changes] == [
            ("refresh", ("name",)),
            ("retrain", ("name",)),
        ]
        assert deployed_jobs(ws)["retrain"] == "[dev bob] retrain"


def test_prod_deploy_uses_plain_names_and_schedules_run(folder: Path) -> None:
    jobs = copy.deepcopy(CONFIG["jobs"])
    jobs["refresh"]["schedule"] = {"cron": "0 * * * *", "paused": True}
    write(folder, edited(jobs=jobs))
    git_init(folder)  # production mode deploys committed code
    with connect(folder, "prod") as ws:
        assert not ws.target.development
        result = deploy(ws)
        assert ws.tables.exists("prod.silver.orders")
        assert deployed_jobs(ws) == {"refresh": "refresh", "retrain": "retrain"}
        assert settings(ws) == {"refresh": True, "retrain": False}
        assert '+ job retrain as "' not in "\n".join(render(result))
    with connect(folder, "dev") as ws:  # targets keep separate state
        assert deployed_jobs(ws) == {}


def test_existing_table_with_other_columns_is_drift_and_left_alone(folder: Path) -> None:
    with connect(folder) as ws:
        ws.tables.create(
            "dev.silver.orders", parse_columns("id BIGINT, amount VARCHAR, note VARCHAR")
        )
        before = ws.tables.describe("dev.silver.orders")
        result = deploy(ws)
        assert result.drift == (
            Drift(
                "dev.silver.orders",
                missing=("placed_at", "day"),
                undeclared=("note",),
                changed=(("amount", "string", "double"),),
            ),
        )
        assert ("create", "table", "dev.silver.orders") not in summary_of(result)
        lines = render(result)
        assert (
            "! drift table dev.silver.orders: column placed_at missing, column day missing, "
            "column note not declared, column amount is string (declared double)"
        ) in lines
        assert any("does not alter existing tables" in line for line in lines)
        after = ws.tables.describe("dev.silver.orders")
        assert (after.version, after.schema) == (before.version, before.schema)
        # Drift is reported on every deploy, but it is not a change.
        again = deploy(ws)
        assert not again.has_changes and len(again.drift) == 1


def test_dry_run_applies_nothing(folder: Path) -> None:
    with connect(folder) as ws:
        result = deploy(ws, dry_run=True)
        assert len(result.changes) == 4 and not result.applied and result.code is not None
        assert render(result)[0].startswith("+ code uncommitted working tree (snapshot ")
        assert render(result)[-1] == "dry run: 5 change(s) not applied"  # and the code
        assert not ws.tables.exists("dev.silver.orders")
        assert deployed_jobs(ws) == {} and settings(ws) == {}
        assert render(apply(ws, result))[-1] == "applied 5 change(s) to target dev"
        assert not plan(ws).has_changes


def test_removed_table_is_forgotten_but_kept(folder: Path) -> None:
    with connect(folder) as ws:
        deploy(ws)
    write(folder, edited(tables={"gold.revenue": CONFIG["tables"]["gold.revenue"]}))
    with connect(folder) as ws:
        result = deploy(ws)
        assert summary_of(result) == [("forget", "table", "dev.silver.orders")]
        assert "the table and its data are kept" in render(result)[1]
        assert ws.tables.exists("dev.silver.orders")
        assert not deploy(ws).has_changes


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"prod.silver.x": {"columns": "a INT"}}, "must be schema.table"),
        ({"silver.x": {"columns": "a NOTATYPE"}}, "tables.silver.x: columns"),
        ({"silver.x": {"columns": "a INT", "primary_key": ["b"]}}, "unknown column(s) b"),
    ],
)
def test_bad_table_declarations_are_refused_before_anything_changes(
    folder: Path, tables: dict[str, Any], message: str
) -> None:
    write(folder, edited(tables=tables))
    with connect(folder) as ws, pytest.raises(DeployError, match=re.escape(message)):
        deploy(ws)


def test_plan_for_another_target_is_refused(folder: Path) -> None:
    with connect(folder, "prod") as ws, pytest.raises(DeployError, match="for target 'dev'"):
        apply(ws, Plan("dev", True, ()))


def test_render_shows_every_kind_of_change() -> None:
    result = Plan(
        "dev",
        True,
        (
            Change("create", "table", "dev.silver.x", "dev.silver.x", "{}"),
            Change("create", "job", "nightly", "[dev bob] nightly", "{}", paused=True),
            Change("update", "job", "retrain", "retrain", "{}", fields=("tasks", "schedule")),
            Change("delete", "job", "old", "old"),
        ),
        (Drift("dev.silver.y", ("z",), (), ()),),
    )
    assert render(result) == [
        "+ table dev.silver.x",
        '+ job nightly as "[dev bob] nightly", paused',
        "~ job retrain (tasks, schedule)",
        "- job old",
        "! drift table dev.silver.y: column z missing",
        "  deploy does not alter existing tables: change their columns yourself",
        "dry run: 4 change(s) not applied",
    ]


def _cli() -> typer.Typer:
    """The deploy command under the same global options as ``lakeforge``."""
    app = typer.Typer()

    @app.callback()
    def _global(
        ctx: typer.Context,
        target: Annotated[str | None, typer.Option("--target", "-t")] = None,
        project_dir: Annotated[Path | None, typer.Option()] = None,
    ) -> None:
        ctx.obj = CliState(target=target, project_dir=project_dir)

    app.command("deploy")(deploy_command)
    return app


def test_cli_prints_the_diff_then_applies(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--project-dir", str(folder), "-t", "dev", "deploy"]
    _cli()([*args, "--dry-run"], standalone_mode=False)
    out = capsys.readouterr().out
    assert "+ table dev.silver.orders" in out
    assert '+ job retrain as "[dev alice] retrain", paused' in out
    assert "dry run: 5 change(s) not applied" in out
    _cli()(args, standalone_mode=False)
    assert "applied 5 change(s) to target dev" in capsys.readouterr().out
    _cli()(args, standalone_mode=False)
    assert capsys.readouterr().out.splitlines()[-1] == "no changes"


def test_endpoints_are_recorded_with_their_inference_tables_and_unknown_models_reported(
    folder: Path,
) -> None:
    endpoint = {
        "served_entities": [{"model": "ml.churn", "alias": "champion"}],
        "inference_table": {"table": "serving.churn_requests"},
    }
    write(folder, edited(endpoints={"churn": endpoint}))
    with connect(folder) as ws:
        result = deploy(ws)
        assert ("create", "endpoint", "churn") in summary_of(result)
        assert ws.tables.exists("dev.serving.churn_requests")
        (problem,) = result.unresolved
        assert "endpoint churn, entity churn-champion" in problem and "dev.ml.churn" in problem
        assert any(line.startswith("! endpoint churn") for line in render(result))
    write(folder, edited(endpoints={"churn": endpoint | {"timeout_s": 5}}))
    with connect(folder) as ws:
        (change,) = plan(ws).changes
        assert (change.action, change.kind, change.fields) == ("update", "endpoint", ("timeout_s",))
        deploy(ws)
    write(folder, CONFIG)
    with connect(folder) as ws:
        assert summary_of(deploy(ws)) == [("delete", "endpoint", "churn")]
        assert ws.tables.exists("dev.serving.churn_requests")  # the log is kept
