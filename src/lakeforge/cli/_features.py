"""``lakeforge features ...``: feature tables and publishing them online."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from lakeforge.cli._context import QuietOpt, console, spinner, workspace

if TYPE_CHECKING:
    from lakeforge.features import PublishMode

app = typer.Typer(
    help="Feature tables: list, describe, publish to the online store.", no_args_is_help=True
)
NameArg = Annotated[str, typer.Argument(help="Feature table: catalog.schema.table.")]


@app.command("list")
def list_features(ctx: typer.Context) -> None:
    """Feature tables of the target."""
    names = workspace(ctx).features.list()
    if not names:
        console.print("no feature tables")
    for name in names:
        console.print(str(name))


@app.command()
def describe(ctx: typer.Context, name: NameArg) -> None:
    """Keys, timestamp key, sequence column and features (with descriptions) of a feature table."""
    info = workspace(ctx).features.describe(name)
    console.print(f"[bold]{info.name}[/bold]  version {info.version}")
    console.print(f"lookup keys: {', '.join(info.lookup_keys)}")
    console.print(f"timestamp key: {info.timestamp_key or 'none'}")
    console.print(f"sequence column: {info.sequence_by or 'none'}")
    if info.description:
        console.print(f"description: {info.description}")
    table = Table("feature", "type", "description", header_style="bold cyan")
    for feature, text in info.features.items():
        table.add_row(feature, str(info.schema.field(feature).type), text or "")
    console.print(table)
    ws = workspace(ctx)
    users = ws.models.versions_using(str(info.name))
    for model, version, features in users:
        console.print(f"used by {model} v{version}: {', '.join(features)}")
    if not users:
        console.print("used by no registered model version yet")


@app.command()
def publish(
    ctx: typer.Context,
    name: NameArg,
    mode: Annotated[str, typer.Option(help="auto, snapshot or incremental.")] = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Copy a feature table to the target's online store (incrementally when it can)."""
    if mode not in ("auto", "snapshot", "incremental"):
        raise typer.BadParameter(
            f"{mode!r}; allowed: auto, snapshot, incremental", param_hint="--mode"
        )
    ws = workspace(ctx)
    text = f"publishing {name}: {{task.completed:,}} row(s) written"
    with spinner(text, on=console, quiet=quiet) as bar:
        task = bar.add_task("publish", total=None)
        result = ws.publish_table(
            name,
            mode=cast("PublishMode", mode),
            progress=lambda rows: bar.update(task, completed=rows),
        )
    console.print(
        f"{result.table}: {result.mode} up to version {result.to_version}, "
        f"{result.rows_written} row(s) written, {result.keys_deleted} key(s) deleted"
    )
