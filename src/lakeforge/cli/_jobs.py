"""``lakeforge jobs ...`` and ``lakeforge run JOB``: the jobs engine from the shell."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace

if TYPE_CHECKING:
    from lakeforge.jobs import JobRun, JobRunner

app = typer.Typer(help="Jobs: DAGs of tasks, their runs and logs.", no_args_is_help=True)

Params = Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE (repeatable).")]
RunId = Annotated[int, typer.Argument(metavar="RUN_ID")]


def _params(pairs: list[str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        try:
            values[name] = json.loads(raw)
        except json.JSONDecodeError:
            values[name] = raw
    return values


def _progress(task: str, status: str, detail: str) -> None:
    colour = {
        "succeeded": "green",
        "failed": "red",
        "timed_out": "red",
        "skipped": "yellow",
        "canceled": "yellow",
    }.get(status, "cyan")
    console.print(f"  [{colour}]{status:>9}[/{colour}] {task}  {detail}", highlight=False)


def _summary(run: JobRun) -> None:
    colour = "green" if run.status == "succeeded" else "red"
    console.print(
        f"run {run.id} of {run.job}: [{colour}]{run.status}[/{colour}]"
        + (f" ({run.error})" if run.error else "")
    )


def _code(run: JobRun) -> str:
    """The commit a run ran (short), and where from: ``1a2b3c4d5e6f`` deployed, or
    ``1a2b3c4d5e6f (working copy)``."""
    commit = (run.commit or "no commit")[:12]
    return commit if run.deployment is not None else f"{commit} (working copy)"


def _exit_for(run: JobRun) -> None:
    if run.status not in ("succeeded", "skipped"):
        raise typer.Exit(code=1)


def run_job(ctx: typer.Context, job: str, params: list[str] | None) -> None:
    runner = _runner(ctx)
    target = runner.ws.target.name
    source = runner.source(job)  # refuses a job not deployed to a production-mode target
    if source.deployment is None:
        console.print(
            f"running the working copy: job {job} is not deployed to {target}", style="yellow"
        )
    else:
        console.print(
            f"running {job} on target {target}: deployment {source.deployment.id} "
            f"({source.deployment.label})",
            highlight=False,
        )
    result = runner.run(job, parameters=_params(params), progress=_progress)
    assert result is not None  # only a run with a fire key can be refused as a duplicate
    _summary(result)
    _exit_for(result)


@app.command("list")
def list_jobs(ctx: typer.Context) -> None:
    """Jobs declared in the project, with their schedule and state."""
    runner = _runner(ctx)
    table = Table("job", "tasks", "schedule", "paused", "description", header_style="bold cyan")
    for name, spec in runner.ws.project.config.all_jobs().items():
        schedule = f"{spec.schedule.cron} ({spec.schedule.timezone})" if spec.schedule else ""
        table.add_row(
            name,
            ", ".join(spec.order()),
            schedule,
            "yes" if runner.paused(name) else "no",
            spec.description or "",
        )
    console.print(table)


@app.command()
def run(ctx: typer.Context, job: str, param: Params = None) -> None:
    """Run a job now and stream its progress."""
    run_job(ctx, job, param)


@app.command()
def runs(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Argument()] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON array of runs, with their tasks.")
    ] = False,
) -> None:
    """Recent runs (of one job or all), newest first, with their tasks' states and values
    (in DAG order); runs whose runner died are closed."""
    runner = _runner(ctx)
    runner.recover_orphans()
    found = runner.runs(job, limit=limit)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in found], default=str, indent=2))
        return
    table = Table(
        "run",
        "job",
        "status",
        "trigger",
        "started",
        "commit",
        "tasks",
        "values",
        "error",
        header_style="bold cyan",
    )
    for r in found:
        table.add_row(
            str(r.id),
            r.job,
            r.status,
            r.trigger,
            r.started_at.isoformat(timespec="seconds") if r.started_at else "",
            _code(r),
            "\n".join(f"{k}={t.status}" for k, t in r.tasks.items()),
            "\n".join(f"{k}={_compact(t.values)}" for k, t in r.tasks.items() if t.values),
            r.error or "",
        )
    console.print(table)


def _compact(values: dict[str, Any]) -> str:
    """Task values on one short line: JSON without spaces, cut at 60 characters."""
    text = json.dumps(values, separators=(",", ":"), default=str)
    return text if len(text) <= 60 else text[:59] + "…"


@app.command()
def logs(
    ctx: typer.Context,
    run_id: RunId,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
) -> None:
    """The captured output of a run's tasks, in the job's DAG order, attempt by attempt."""
    run_ = _runner(ctx).get(run_id)
    for key, t in run_.tasks.items():
        if task and key != task:
            continue
        console.rule(f"{key} ({t.status}, {t.attempts} attempt(s))")
        if t.log_path and Path(t.log_path).exists():
            console.print(Path(t.log_path).read_text(), highlight=False, markup=False)


@app.command()
def cancel(ctx: typer.Context, run_id: RunId) -> None:
    """Cancel a running run; its task processes and their children are killed."""
    _runner(ctx).cancel(run_id)
    console.print(f"cancel requested for run {run_id}")


@app.command()
def repair(ctx: typer.Context, run_id: RunId, param: Params = None) -> None:
    """Rerun a run's failed tasks and their dependents, in the same run."""
    result = _runner(ctx).repair(run_id, parameters=_params(param), progress=_progress)
    _summary(result)
    _exit_for(result)


@app.command()
def pause(ctx: typer.Context, job: str) -> None:
    """Pause a job's schedule and triggers."""
    _runner(ctx).set_paused(job, True)
    console.print(f"{job} paused")


@app.command()
def unpause(ctx: typer.Context, job: str) -> None:
    """Resume a job's schedule and triggers."""
    _runner(ctx).set_paused(job, False)
    console.print(f"{job} unpaused")


def _runner(ctx: typer.Context) -> JobRunner:
    from lakeforge.jobs import JobRunner

    return JobRunner(workspace(ctx))
