"""``lakeforge runs list|show|compare``: the target's tracked runs, without opening MLflow's UI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace

app = typer.Typer(help="Tracked runs of the project on the target.", no_args_is_help=True)

RunIdArg = Annotated[str, typer.Argument(help="A run id, or a prefix of it as `runs list` shows.")]


@app.command("list")
def list_command(
    ctx: typer.Context,
    pipeline: Annotated[
        str | None, typer.Option(help="Only this pipeline's experiment (e.g. train).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
) -> None:
    """The newest runs of the project's experiments on the target."""
    from lakeforge.tracking import list_runs

    ws = workspace(ctx)
    runs = list_runs(ws.project, ws.target, pipeline=pipeline, limit=limit)
    if not runs:
        console.print(f"no runs of project {ws.project.name} on target {ws.target.name}")
        return
    table = Table(
        "run",
        "pipeline",
        "name",
        "status",
        "started",
        "commit",
        "metrics",
        header_style="bold cyan",
    )
    for run in runs:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(run.metrics.items())[:4])
        table.add_row(
            run.run_id[:12],
            run.pipeline,
            run.name,
            run.status,
            _time(run.start_ms),
            run.commit[:10],
            metrics,
        )
    console.print(table)


@app.command()
def show(ctx: typer.Context, run_id: RunIdArg) -> None:
    """One run: its lineage (commit, table versions read), parameters and metrics."""
    from lakeforge.tracking import get_run

    ws = workspace(ctx)
    run = get_run(ws.project, ws.target, run_id)
    console.print(
        f"run {run.run_id} ({run.name}) in pipeline {run.pipeline}: {run.status}, "
        f"started {_time(run.start_ms)}"
    )
    console.print(f"code commit: {run.commit or 'not recorded'}")
    console.print(f"data read: {run.data_versions or 'none recorded'}")
    table = Table("kind", "name", "value", header_style="bold cyan")
    for name, value in sorted(run.params.items()):
        table.add_row("param", name, value)
    for name, metric in sorted(run.metrics.items()):
        table.add_row("metric", name, f"{metric:.6g}")
    console.print(table)


@app.command()
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids (or prefixes).")],
) -> None:
    """Parameters and metrics of several runs side by side; rows that differ are marked."""
    if len(run_ids) < 2:
        raise typer.BadParameter("give at least two run ids", param_hint="RUN_IDS")
    from lakeforge.tracking import get_run

    ws = workspace(ctx)
    runs = [get_run(ws.project, ws.target, run_id) for run_id in run_ids]
    table = Table("", "name", *(run.run_id[:12] for run in runs), header_style="bold cyan")
    rows: list[tuple[str, str, list[str]]] = [
        ("commit", "", [run.commit[:10] for run in runs]),
        ("data", "", [run.data_versions for run in runs]),
    ]
    for name in sorted({k for run in runs for k in run.params}):
        rows.append(("param", name, [run.params.get(name, "") for run in runs]))
    for name in sorted({k for run in runs for k in run.metrics}):
        metrics = [run.metrics.get(name) for run in runs]
        rows.append(("metric", name, ["" if m is None else f"{m:.6g}" for m in metrics]))
    for kind, name, shown in rows:
        mark = "≠ " if len(set(shown)) > 1 else ""
        table.add_row(mark + kind, name, *shown)
    console.print(table)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms else ""
