"""``lakeforge sql`` and ``lakeforge ingest``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lakeforge.cli._context import console, workspace
from lakeforge.cli._render import OutputFormat, render
from lakeforge.lakehouse import IngestReport
from lakeforge.lakehouse._ingest import DEFAULT_LEASE_S, FileFormat


def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="SQL; tables as catalog.schema.table[@vN].")],
    format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output format.")
    ] = OutputFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
    write: Annotated[bool, typer.Option(help="Allow CREATE TABLE AS / INSERT INTO.")] = False,
    max_rows: Annotated[int, typer.Option(help="Rows shown by --format table.")] = 50,
) -> None:
    """Run SQL over the lakehouse with DuckDB (read-only unless --write)."""
    result = workspace(ctx).sql(query, read_only=not write)
    render(result, format, output, max_rows=max_rows)


def ingest(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(help="A folder (or file) of CSV, JSON-lines or Parquet.")
    ],
    into: Annotated[str, typer.Option("--into", help="Target table, e.g. dev.bronze.flights.")],
    format: Annotated[str, typer.Option("--format", help="auto, csv, json or parquet.")] = "auto",
    evolve_schema: Annotated[bool, typer.Option(help="Let new columns extend the table.")] = False,
    wait: Annotated[
        bool,
        typer.Option(
            help="Wait while another ingestion into the table runs (--no-wait: fail at once)."
        ),
    ] = True,
    lease_seconds: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="How long a run that died keeps the table locked (renewed every third).",
        ),
    ] = DEFAULT_LEASE_S,
) -> None:
    """Load the files not yet ingested into a table, exactly once each."""
    if format not in ("auto", "csv", "json", "parquet"):
        raise typer.BadParameter(
            f"{format!r}; allowed: auto, csv, json, parquet", param_hint="--format"
        )
    report = run_ingest(
        ctx,
        source,
        into,
        format,  # type: ignore[arg-type]
        evolve_schema,
        wait=wait,
        lease_s=lease_seconds,
    )
    print_report(report)
    if report.failed:
        raise typer.Exit(code=2)


def run_ingest(
    ctx: typer.Context,
    source: Path,
    into: str,
    fmt: FileFormat,
    evolve_schema: bool,
    *,
    wait: bool = True,
    lease_s: float = DEFAULT_LEASE_S,
) -> IngestReport:
    with Progress(
        TextColumn("[bold]ingest[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(into, total=None)

        def tick(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, description=name or into)

        return workspace(ctx).ingest(
            source,
            into,
            format=fmt,
            evolve_schema=evolve_schema,
            progress=tick,
            wait=wait,
            lease_s=lease_s,
        )


def print_report(report: IngestReport) -> None:
    console.print(
        f"{report.table}: loaded {len(report.loaded)} file(s), {report.rows:,} rows; "
        f"skipped {report.skipped} already ingested"
        + (f"; recovered {report.recovered} interrupted batch(es)" if report.recovered else "")
    )
    for path in report.changed:
        console.print(f"[yellow]changed since it was ingested, not reloaded:[/yellow] {path}")
    for path, error in report.failed.items():
        console.print(f"[red]failed:[/red] {path}: {error}")
