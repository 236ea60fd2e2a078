"""``lakeforge tables ...``: the lakehouse catalog."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from lakeforge._console import rich_table
from lakeforge.cli._context import console, workspace

app = typer.Typer(help="Create, inspect and maintain lakehouse tables.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Table name: catalog.schema.table (or schema.table).")]


@app.command("list")
def list_tables(
    ctx: typer.Context,
    catalog: Annotated[str | None, typer.Option(help="Catalog (default: the target's).")] = None,
    schema: Annotated[str | None, typer.Option(help="Only this schema.")] = None,
) -> None:
    """List the tables of a catalog."""
    from lakeforge.lakehouse import TableLocations  # no Arrow or delta-rs needed to list

    ws = workspace(ctx)
    names = TableLocations(ws.project, ws.target).list(catalog=catalog, schema=schema)
    if not names:
        console.print("no tables")
    for name in names:
        console.print(str(name))


@app.command()
def create(
    ctx: typer.Context,
    name: NameArg,
    schema: Annotated[str, typer.Option(help="Columns in SQL, e.g. 'id BIGINT, name VARCHAR'.")],
    partition_by: Annotated[
        list[str] | None, typer.Option(help="Partition column (repeatable).")
    ] = None,
    primary_key: Annotated[
        list[str] | None, typer.Option(help="Primary-key column (repeatable).")
    ] = None,
    comment: Annotated[str | None, typer.Option(help="Table comment.")] = None,
    no_change_data_feed: Annotated[
        bool, typer.Option(help="Turn the change data feed off.")
    ] = False,
) -> None:
    """Create an empty table."""
    from lakeforge.lakehouse import parse_columns

    info = workspace(ctx).tables.create(
        name,
        parse_columns(schema),
        partition_by=partition_by,
        primary_keys=primary_key,
        comment=comment,
        change_data_feed=not no_change_data_feed,
    )
    console.print(f"created {info.name} at {info.location}")


@app.command()
def describe(ctx: typer.Context, name: NameArg) -> None:
    """Schema, keys, comment, size and properties of a table."""
    info = workspace(ctx).tables.describe(name)
    console.print(f"[bold]{info.name}[/bold]  version {info.version}")
    console.print(f"location: {info.location}")
    if info.comment:
        console.print(f"comment: {info.comment}")
    console.print(
        f"rows: {info.num_rows:,}  files: {info.num_files}  size: {info.size_bytes:,} bytes"
    )
    if info.partition_columns:
        console.print(f"partitioned by: {', '.join(info.partition_columns)}")
    if info.primary_keys:
        console.print(f"primary key: {', '.join(info.primary_keys)}")
    columns = Table("column", "type", "nullable", "comment", header_style="bold cyan")
    for field in info.schema:
        columns.add_row(
            field.name,
            str(field.type),
            "yes" if field.nullable else "no",
            info.column_comments.get(field.name, ""),
        )
    console.print(columns)
    for key, value in sorted(info.properties.items()):
        console.print(f"{key} = {value}")


@app.command()
def history(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[int | None, typer.Option(help="At most this many commits.")] = None,
) -> None:
    """Commits of a table, newest first."""
    rows = workspace(ctx).tables.history(name, limit=limit)
    table = Table(
        "version", "timestamp", "operation", "parameters", "metrics", header_style="bold cyan"
    )
    for row in rows:
        metrics = {k: v for k, v in row["metrics"].items() if k.startswith("num_")}
        table.add_row(
            str(row["version"]),
            row["timestamp"].isoformat(timespec="seconds"),
            str(row["operation"]),
            json.dumps(row["parameters"]),
            json.dumps(metrics),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 20,
    version: Annotated[int | None, typer.Option(help="Read this version.")] = None,
) -> None:
    """Show the first rows of a table."""
    data = workspace(ctx).tables.read(name, version=version)
    console.print(rich_table(data, title=str(name), max_rows=limit))


@app.command()
def delete(
    ctx: typer.Context,
    name: NameArg,
    where: Annotated[str, typer.Option(help="SQL predicate of the rows to delete.")],
) -> None:
    """Delete rows matching a predicate."""
    result = workspace(ctx).tables.delete(name, where)
    console.print(
        f"deleted {result.rows_dropped} rows from {result.table}; now version {result.version}"
    )


@app.command()
def restore(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[int | None, typer.Option(help="Version to restore.")] = None,
    timestamp: Annotated[str | None, typer.Option(help="ISO timestamp to restore.")] = None,
) -> None:
    """Restore a table to an earlier version (as a new commit)."""
    result = workspace(ctx).tables.restore(name, version=version, as_of=timestamp)
    console.print(f"restored {result.table}; now version {result.version}")


@app.command()
def optimize(
    ctx: typer.Context,
    name: NameArg,
    zorder_by: Annotated[
        list[str] | None, typer.Option(help="Z-order by column (repeatable).")
    ] = None,
) -> None:
    """Compact small files into larger ones (optionally Z-ordered)."""
    with console.status(f"optimizing {name}"):
        metrics = workspace(ctx).tables.optimize(name, zorder_by=zorder_by)
    console.print(
        f"optimized {name}: {metrics.get('numFilesRemoved', 0)} files removed, "
        f"{metrics.get('numFilesAdded', 0)} added"
    )


@app.command()
def vacuum(
    ctx: typer.Context,
    name: NameArg,
    retention_hours: Annotated[
        int, typer.Option(help="Keep files needed by versions this recent.")
    ] = 168,
    dry_run: Annotated[bool, typer.Option(help="List files only; delete nothing.")] = False,
) -> None:
    """Delete data files that no recent version references."""
    with console.status(f"vacuuming {name}"):
        files = workspace(ctx).tables.vacuum(name, retention_hours=retention_hours, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {len(files)} files")


@app.command()
def drop(
    ctx: typer.Context,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a table with its data and history (there is no undo)."""
    tables = workspace(ctx).tables
    table = tables.name(name)
    tables.owner_of(table, write=True)
    if not tables.exists(table):
        tables.drop(table)  # raises the not-found error with suggestions
    if not yes and not typer.confirm(f"drop {table} with all its data and history?"):
        raise typer.Exit(1)
    tables.drop(table)
    console.print(f"dropped {table}")
