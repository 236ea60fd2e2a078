"""``lakeforge deploy``: snapshot the code at its commit and make a target match the
tables, jobs and endpoints the project declares."""

from __future__ import annotations

from typing import Annotated

import typer

from lakeforge.cli._context import QuietOpt, console, spinner, workspace

_STYLES = {"+": "green", "~": "yellow", "-": "red", "!": "magenta"}


def deploy_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes without applying them.")
    ] = False,
    allow_dirty: Annotated[
        bool,
        typer.Option(
            "--allow-dirty",
            help="Deploy uncommitted changes to a production-mode target (recorded as dirty).",
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Snapshot the code at its commit into the target (-t) and make the target match the
    tables, jobs and endpoints the project declares; shows the diff."""
    ws = workspace(ctx)
    mode = "development" if ws.target.development else "production"
    console.print(f"deploying {ws.project.name} to target {ws.target.name} ({mode} mode)")
    from lakeforge.bundle import deploy, render, summary

    with spinner("{task.description}", on=console, quiet=quiet) as bar:
        step = bar.add_task("deploying", total=None)
        result = deploy(
            ws,
            dry_run=dry_run,
            allow_dirty=allow_dirty,
            progress=lambda text: bar.update(step, description=text),
        )
    for line in render(result, with_summary=False):
        # Plain text: deployed names such as "[dev alice] job" are not Rich markup.
        console.print(line, style=_STYLES.get(line[:1]), markup=False, highlight=False)
    console.print(summary(result), markup=False, highlight=False)
