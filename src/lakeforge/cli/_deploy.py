"""``lakeforge deploy``: make a target match the tables and jobs declared in the project."""

from __future__ import annotations

from typing import Annotated

import typer

from lakeforge.cli._context import console, workspace

_STYLES = {"+": "green", "~": "yellow", "-": "red", "!": "magenta"}


def deploy_command(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes without applying them.")
    ] = False,
) -> None:
    """Make the target (-t) match the tables and jobs the project declares; shows the diff first."""
    ws = workspace(ctx)
    mode = "development" if ws.target.development else "production"
    console.print(f"deploying {ws.project.name} to target {ws.target.name} ({mode} mode)")
    from lakeforge.bundle import apply, plan, render, summary

    planned = plan(ws)
    for line in render(planned, with_summary=False):
        # Plain text: deployed names such as "[dev alice] job" are not Rich markup.
        console.print(line, style=_STYLES.get(line[:1]), markup=False, highlight=False)
    result = planned if dry_run or not planned.has_changes else apply(ws, planned)
    console.print(summary(result), markup=False, highlight=False)
