"""``lakeforge score``: batch scoring of a table or a SQL query with a registered model."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Literal, TypedDict

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lakeforge.cli._context import QuietOpt, console, workspace
from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.inference import ScoreResult


class _RowOptions(TypedDict):
    """The options batch and streaming scoring share: the output's columns, failed rows."""

    keys: list[str] | None
    keep_columns: bool
    prediction: str
    features: Literal["offline", "online"]
    fail_fast: bool


def score_command(
    ctx: typer.Context,
    model_uri: Annotated[
        str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/VERSION (prefix optional).")
    ],
    input: Annotated[
        str | None, typer.Option("--input", help="The table to score (its current version).")
    ] = None,
    sql: Annotated[
        str | None, typer.Option("--sql", help="A read-only SQL query whose rows to score.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            help="A table (failed rows go to <table>_errors), or a .parquet or .csv file.",
        ),
    ] = None,
    keys: Annotated[
        str | None,
        typer.Option(
            "--keys",
            help="Input columns to keep, comma-separated (default: the input table's "
            "primary keys, else every column).",
        ),
    ] = None,
    keep_columns: Annotated[
        bool, typer.Option("--keep-columns", help="Keep every input column.")
    ] = False,
    prediction: Annotated[
        str, typer.Option("--prediction", help="Name of the prediction column.")
    ] = "prediction",
    features: Annotated[
        str,
        typer.Option(
            "--features",
            help="Where a feature-aware model looks its features up: offline (point in "
            "time) or online (the online store).",
        ),
    ] = "offline",
    engine: Annotated[str, typer.Option("--engine", help="local or ray.")] = "local",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Worker processes (default: one per core)."),
    ] = None,
    fail_fast: Annotated[
        bool,
        typer.Option("--fail-fast", help="Stop at the first row the model fails on."),
    ] = False,
    quiet: QuietOpt = False,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Score only the rows that arrived in --input since the output's checkpoint "
            "(its change data feed), in micro-batches; poll until SIGTERM or Ctrl+C.",
        ),
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="With --stream: score what is there, then stop.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", min=0.01, help="With --stream: seconds between polls."),
    ] = 5.0,
    max_rows: Annotated[
        int,
        typer.Option(
            "--max-rows", min=1, help="With --stream: rows per micro-batch (whole versions)."
        ),
    ] = 100_000,
) -> None:
    """Score a table (--input) or a query (--sql) into a table or file (--output).

    Scoring the same table version again skips what the output already holds; a run
    stopped mid-way completes when run again.
    """
    from lakeforge.inference import score

    if output is None:
        raise typer.BadParameter("give the table or file to write to", param_hint="--output")
    if features not in ("offline", "online"):
        raise typer.BadParameter(f"{features!r}; allowed: offline, online", param_hint="--features")
    if (input is None) == (sql is None):
        raise LakeforgeError(
            "give exactly one of --input TABLE or --sql QUERY"
            + (" (both were given)" if input is not None else "")
        )
    rows = _RowOptions(
        keys=[k.strip() for k in keys.split(",") if k.strip()] if keys else None,
        keep_columns=keep_columns,
        prediction=prediction,
        features="online" if features == "online" else "offline",
        fail_fast=fail_fast,
    )
    ws = workspace(ctx)
    if stream or once:
        if not stream or input is None or engine != "local" or workers is not None:
            raise LakeforgeError(
                "--once needs --stream, and --stream reads a table (--input) in this process "
                "(no --sql, --engine ray or --workers)"
            )
        stream_scores(
            ws,
            model_uri,
            input,
            output,
            rows,
            once=once,
            interval=interval,
            max_rows=max_rows,
        )
        return
    with _progress_bar(output, show=not quiet and console.is_terminal) as tick:
        result = score(
            ws,
            model_uri,
            input=input,
            sql=sql,
            output=output,
            engine=engine,
            workers=workers,
            progress=tick,
            **rows,
        )
    print_result(result)


@contextmanager
def _progress_bar(output: str, *, show: bool) -> Iterator[Callable[[int, int | None], None] | None]:
    """A bar of input rows done on a terminal; nothing otherwise."""
    if not show:
        yield None
        return
    with Progress(
        TextColumn(f"[bold]score[/bold] → {escape(output)}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("score", total=None)

        def tick(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def print_result(result: ScoreResult) -> None:
    """The summary line: rows scored and failed, where they went, the model, the speed."""
    where = result.output or "memory"
    if result.output_version is not None:
        where += f"@v{result.output_version}"
    skipped = (
        f"; {result.chunks_skipped} chunk(s) already scored, skipped"
        if result.chunks_skipped
        else ""
    )
    failed = (
        f"[red]{result.rows_failed:,} failed[/red] (see {escape(result.errors_output or '')})"
        if result.rows_failed
        else "0 failed"
    )
    console.print(
        f"scored {result.rows_scored:,} rows, {failed} → {escape(where)} with "
        f"{escape(result.model.label)}{skipped}; {result.rows_per_s:,.0f} rows/s",
        highlight=False,
    )


def stream_scores(
    ws: Workspace,
    model_uri: str,
    input: str,
    output: str,
    rows: _RowOptions,
    *,
    once: bool,
    interval: float,
    max_rows: int,
) -> None:
    """``--stream``: one line per micro-batch; SIGTERM (or Ctrl+C) stops after the
    micro-batch under way commits, a second one at once (nothing is ever half-committed)."""
    import signal
    import threading

    from lakeforge.inference import MicroBatch, run_stream

    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        console.print("stopping after the micro-batch under way")

    def line(batch: MicroBatch) -> None:
        written = "nothing to write" if batch.output_version is None else f"v{batch.output_version}"
        console.print(
            f"input v{batch.first_version}-v{batch.last_version}: {batch.rows_scored:,} scored, "
            f"{batch.rows_failed:,} failed, {batch.rows_deleted:,} deleted with model "
            f"v{batch.model_version} → {escape(output)} {written}",
            highlight=False,
        )

    previous = [signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)]
    try:
        if not once:
            console.print(f"streaming {escape(input)} → {escape(output)}; Ctrl+C stops")
        result = run_stream(
            ws,
            model_uri,
            input=input,
            output=output,
            once=once,
            interval_s=interval,
            max_rows=max_rows,
            stop=stop,
            progress=line,
            **rows,
        )
    finally:
        for sig, handler in zip((signal.SIGTERM, signal.SIGINT), previous, strict=True):
            signal.signal(sig, handler)
    console.print(
        f"streamed {result.micro_batches} micro-batch(es): {result.rows_scored:,} rows scored, "
        f"{result.rows_failed:,} failed, {result.rows_deleted:,} deletes recorded; input "
        f"checkpoint v{result.last_input_version}",
        highlight=False,
    )
