"""``lakeforge ingest``: load files into a table exactly once, and inspect or repair its checkpoint.

``lakeforge ingest SOURCE --into TABLE`` is the ``load`` command: a first word that is
not one of ``load``, ``status``, ``retry`` or ``forget`` is the source (a source named
like a command is given as ``./status``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from lakeforge.cli._context import console, workspace

if TYPE_CHECKING:
    from lakeforge.lakehouse import FileFormat, IngestProgress, IngestReport, ProgressCallback

LOAD = "load"


class _LoadByDefault(TyperGroup):
    """A group whose unknown first word (or first option) starts the ``load`` command."""

    default_command = LOAD

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_LoadByDefault,
    no_args_is_help=True,
    subcommand_metavar="SOURCE --into TABLE | COMMAND [ARGS]...",
    help="Load files into a table exactly once: `lakeforge ingest SOURCE --into TABLE` "
    "(the load command); status, retry and forget inspect and repair the checkpoint.",
)

TableArg = Annotated[str, typer.Argument(help="Target table, e.g. dev.bronze.flights.")]
FormatOpt = Annotated[
    str, typer.Option("--format", help="auto (from the file suffix), csv, json or parquet.")
]
EvolveOpt = Annotated[bool, typer.Option(help="Let new columns extend the table.")]
WaitOpt = Annotated[
    bool,
    typer.Option(
        help="Wait while another ingestion into the table runs (--no-wait: fail at once)."
    ),
]
LeaseOpt = Annotated[
    float | None,
    typer.Option(
        min=1.0,
        help="How long a run that died keeps the table locked (renewed every third; default 60).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command(LOAD)
def load(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(help="A folder (or file) of CSV, JSON-lines or Parquet.")
    ],
    into: Annotated[str, typer.Option("--into", help="Target table, e.g. dev.bronze.flights.")],
    format: FormatOpt = "auto",
    evolve_schema: EvolveOpt = False,
    wait: WaitOpt = True,
    lease_seconds: LeaseOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Load the files not yet ingested (new, or failed before) into a table, exactly once each."""
    options = _options(format, evolve_schema, wait, lease_seconds)
    with _progress_bar(into, show=console.is_terminal and not quiet) as progress:
        report = workspace(ctx).ingest(source, into, progress=progress, **options)
    print_report(report)


@app.command()
def status(ctx: typer.Context, table: TableArg) -> None:
    """Show the checkpoint: files loaded (rows, version, when), failed (why), changed since."""
    state = workspace(ctx).ingest_status(table)
    if not state.files:
        console.print(f"{state.table}: no files ingested yet")
        return
    console.print(
        f"{state.table}: {len(state.loaded)} file(s) loaded "
        f"({sum(f.rows or 0 for f in state.loaded):,} rows), {len(state.failed)} failed, "
        f"{len(state.changed)} changed after loading"
    )
    grid = Table(header_style="bold cyan")
    for column in ("status", "file", "rows", "version", "when (UTC)", "note"):
        grid.add_column(column, overflow="fold")
    styles = {"loaded": "green", "failed": "red", "pending": "yellow"}
    for file in state.files:
        notes = [n for n in (file.error, file.change) if n]
        grid.add_row(
            f"[{styles.get(file.status, 'white')}]{file.status}[/]",
            escape(file.path),
            "" if file.rows is None else f"{file.rows:,}",
            "" if file.table_version is None else str(file.table_version),
            file.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            escape("; ".join(notes)),
        )
    console.print(grid)
    if state.failed:
        console.print(
            f"[dim]retry the failed files with `lakeforge ingest retry {state.table}`[/dim]"
        )


@app.command()
def retry(
    ctx: typer.Context,
    table: TableArg,
    format: FormatOpt = "auto",
    evolve_schema: EvolveOpt = False,
    wait: WaitOpt = True,
    lease_seconds: LeaseOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Load again the files that failed, from the paths recorded in the checkpoint."""
    options = _options(format, evolve_schema, wait, lease_seconds)
    with _progress_bar(table, show=console.is_terminal and not quiet) as progress:
        report = workspace(ctx).ingest_retry(table, progress=progress, **options)
    print_report(report)


@app.command()
def forget(
    ctx: typer.Context,
    table: TableArg,
    files: Annotated[
        list[str], typer.Argument(help="Recorded files (or folders of them) to forget.")
    ],
) -> None:
    """Remove files from the checkpoint so that the next run loads them again."""
    forgotten = workspace(ctx).ingest_forget(table, files)
    console.print(f"{table}: forgot {len(forgotten)} file(s); the next run loads them again")
    for path in forgotten:
        console.print(f"  {escape(path)}", highlight=False)


def _options(
    format: str, evolve_schema: bool, wait: bool, lease_seconds: float | None
) -> dict[str, Any]:
    """The load options shared by ``load`` and ``retry``; the SDK's lease unless one is given."""
    lease = {} if lease_seconds is None else {"lease_s": lease_seconds}
    return {"format": _format(format), "evolve_schema": evolve_schema, "wait": wait, **lease}


def _format(value: str) -> FileFormat:
    from lakeforge.lakehouse import FORMATS

    for fmt in FORMATS:
        if value == fmt:
            return fmt
    raise typer.BadParameter(f"{value!r}; allowed: {', '.join(FORMATS)}", param_hint="--format")


@contextmanager
def _progress_bar(table: str, *, show: bool) -> Iterator[ProgressCallback | None]:
    """A progress bar of files and bytes on a terminal; no output at all otherwise."""
    if not show:
        yield None
        return
    with Progress(
        TextColumn("[bold]ingest[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.fields[files]}"),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(table, total=None, files="")

        def tick(progress: IngestProgress) -> None:
            bar.update(
                task,
                completed=progress.bytes_done,
                total=progress.bytes_total or None,
                description=escape(progress.activity or table),
                files=f"{progress.files_done}/{progress.files_total} files"
                if progress.files_total
                else "",
            )

        yield tick


def print_report(report: IngestReport) -> None:
    """The run's summary, then each unsupported, changed and failed file; exit 2 on failures."""
    console.print(
        f"{report.table}: loaded {len(report.loaded)} file(s), {report.rows:,} rows; "
        f"skipped {report.skipped} already ingested"
        + (f"; {len(report.unsupported)} unsupported" if report.unsupported else "")
        + (f"; recovered {report.recovered} interrupted batch(es)" if report.recovered else "")
        + (f"; [red]{len(report.failed)} failed[/red]" if report.failed else ""),
        highlight=False,
    )
    for path, reason in report.unsupported.items():
        console.print(f"[yellow]skipped:[/yellow] {escape(path)}: {escape(reason)}")
    for path in report.changed:
        console.print(
            f"[yellow]changed since it was ingested, not reloaded:[/yellow] {escape(path)}"
        )
    for path, error in report.failed.items():
        console.print(f"[red]failed:[/red] {escape(path)}: {escape(error)}")
    if report.failed:
        console.print(
            f"[dim]failed files are not ingested: fix them and run again, or `lakeforge ingest "
            f"retry {report.table}`; `lakeforge ingest status {report.table}` shows why[/dim]"
        )
        raise typer.Exit(code=2)
