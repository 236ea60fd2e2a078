"""``lakeforge vectors ...``: vector indexes synced from Delta, queried, pinned, rolled back."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from lakeforge.cli._context import QuietOpt, console, spinner, workspace
from lakeforge.cli._render import OutputFormat, render

app = typer.Typer(
    help="Vector indexes: sync from a table's change data feed, query, pin, roll back.",
    no_args_is_help=True,
)
Name = Annotated[str, typer.Argument(help="An index declared under vector_indexes: (schema.name).")]


class QueryKind(StrEnum):
    vector = "vector"
    hybrid = "hybrid"
    keyword = "keyword"


class QueryFormat(StrEnum):
    table = "table"
    json = "json"


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


@app.command("list")
def list_command(ctx: typer.Context) -> None:
    """The declared indexes: source, synced source version, pinned version, rows."""
    table = Table("index", "source", "synced", "latest", "pinned", "rows", header_style="bold cyan")
    for info in workspace(ctx).vectors.list():
        table.add_row(
            info.name,
            info.source,
            "-" if info.synced_delta_version is None else f"v{info.synced_delta_version}",
            _opt(info.latest_version),
            _opt(info.pinned_version),
            _opt(info.rows),
        )
    if not table.rows:
        table.caption = "no vector indexes: declare them under vector_indexes: in lakeforge.yaml"
    console.print(table)


@app.command("sync")
def sync_command(
    ctx: typer.Context,
    name: Name,
    full: Annotated[
        bool, typer.Option("--full", help="Rebuild from a snapshot, not the change data feed.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Bring an index up to its source table (the changes since its last sync)."""
    ws = workspace(ctx)
    with spinner(
        "syncing {task.description}: {task.completed} row(s) embedded", on=console, quiet=quiet
    ) as bar:
        task = bar.add_task(name, total=None)
        result = ws.vectors.sync(name, full=full, progress=lambda n: bar.advance(task, n))
    kind = "snapshot" if result.full else "changes"
    console.print(
        f"{result.index}: source v{result.delta_version} ({kind}), {result.upserted} "
        f"upserted, {result.deleted} deleted -> index version {result.index_version} "
        f"(pinned: {_opt(result.pinned)}) in {result.seconds:.1f}s",
        highlight=False,
    )


@app.command("query")
def query_command(
    ctx: typer.Context,
    name: Name,
    text: Annotated[str, typer.Argument(help="The query text.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 10,
    filter: Annotated[
        str | None,
        typer.Option("--filter", help="A SQL predicate on metadata columns: \"kind = 'x'\"."),
    ] = None,
    type: Annotated[QueryKind, typer.Option("--type", help="The kind of search.")] = (
        QueryKind.vector
    ),
    version: Annotated[
        int | None, typer.Option("--version", help="An index version (default: the pinned).")
    ] = None,
    format: Annotated[QueryFormat, typer.Option("--format", help="Output format.")] = (
        QueryFormat.table
    ),
) -> None:
    """The K rows nearest the text, best first, with their scores."""
    found = workspace(ctx).vectors.search(
        name, text, k=k, filter=filter, query_type=type.value, version=version
    )
    render(found, OutputFormat(format.value), None, max_rows=k)


@app.command("pin")
def pin_command(
    ctx: typer.Context,
    name: Name,
    version: Annotated[int, typer.Argument(help="The index version search should read.")],
) -> None:
    """Make search (and serving) read an index version."""
    before = workspace(ctx).vectors.pin(name, version)
    console.print(f"{name}: pinned version {before} -> {version}", highlight=False)


@app.command("rollback")
def rollback_command(ctx: typer.Context, name: Name) -> None:
    """Pin the version that was pinned before the current one."""
    version = workspace(ctx).vectors.rollback(name)
    console.print(f"{name}: pinned version {version} (rolled back)", highlight=False)


@app.command("history")
def history_command(ctx: typer.Context, name: Name) -> None:
    """Synced versions, newest first: index version, source version, rows, time, pinned."""
    table = Table("version", "source", "rows", "time", "pinned", header_style="bold cyan")
    for entry in workspace(ctx).vectors.history(name):
        table.add_row(
            str(entry.index_version),
            f"v{entry.delta_version}",
            str(entry.rows),
            entry.time.strftime("%Y-%m-%d %H:%M:%S"),
            "*" if entry.pinned else "",
        )
    console.print(table)
