"""``lakeforge monitor ...``: monitors' refreshes, latest metrics, alerts and HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lakeforge.cli._context import QuietOpt, console, spinner, workspace

app = typer.Typer(
    help="Monitors: drift, quality and serving-health metrics, alerts and reports.",
    no_args_is_help=True,
)
Name = Annotated[str, typer.Argument(help="A monitor declared in lakeforge.yaml.")]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M"))
    return str(value)


@app.command("list")
def list_command(ctx: typer.Context) -> None:
    """The monitors of the project, with their alerts' states."""
    from lakeforge.monitoring import alert_states, list_monitors

    ws = workspace(ctx)
    states: dict[str, list[str]] = {}
    for state in alert_states(ws):
        states.setdefault(state.monitor, []).append(state.state)
    table = Table(
        "monitor", "table", "profile", "windows", "alerts", "triggered", header_style="bold cyan"
    )
    for spec in list_monitors(ws):
        table.add_row(
            spec.name,
            spec.table,
            spec.profile,
            ", ".join(spec.granularity_list),
            str(len(spec.alerts)),
            str(states.get(spec.name, []).count("triggered")),
        )
    if not table.rows:
        table.caption = "no monitors: declare them under monitors: in lakeforge.yaml"
    console.print(table)


@app.command("refresh")
def refresh_command(
    ctx: typer.Context,
    name: Name,
    full: Annotated[
        bool, typer.Option("--full", help="Recompute every window, not only the new data's.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Compute the metrics of the windows new data touched, then evaluate the alerts."""
    from lakeforge.monitoring import refresh

    ws = workspace(ctx)
    with spinner(f"refreshing monitor {name}", on=console, quiet=quiet):
        result = refresh(ws, name, full=full)
    console.print(
        f"monitor {name}: {len(result.windows)} window(s) recomputed from {result.rows_read} "
        f"row(s); {result.profile_rows} profile and {result.drift_rows} drift row(s) written "
        f"to {result.tables[0]} and {result.tables[1]}",
        highlight=False,
    )
    for moved in result.alerts:
        colour = "red" if moved.state == "triggered" else "green"
        console.print(
            f"  alert {moved.rule}: [{colour}]{moved.state}[/{colour}] "
            f"({moved.metric} of {moved.column_name} = {_fmt(moved.value)} "
            f"{moved.comparator} {_fmt(moved.threshold)})",
            highlight=False,
        )


@app.command("show")
def show_command(
    ctx: typer.Context,
    name: Name,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="The window starting at this time (a prefix: 2026-01-03). Default: the newest.",
        ),
    ] = None,
) -> None:
    """The drift per column (method, score, threshold, verdict) and quality of one window."""
    from lakeforge.monitoring import output_tables, window_view

    ws = workspace(ctx)
    tables = [
        ws.tables.read(table) if ws.tables.exists(table) else None
        for table in output_tables(ws, name)
    ]
    view = window_view(tables[0], tables[1], window=window)
    if view is None:
        wanted = f"no window starting {window}" if window else "no metrics yet"
        console.print(f"monitor {name}: {wanted} (run `lakeforge monitor refresh {name}`)")
        return
    console.print(
        f"monitor {name}: window {_fmt(view.start)} to {_fmt(view.end)} ({view.granularity})",
        highlight=False,
    )
    drift = Table(
        "column",
        "method",
        "score",
        "threshold",
        "verdict",
        header_style="bold cyan",
        title=f"drift ({view.drift_type or 'none'})",
    )
    for row in view.drift:
        if row["column_name"] == ":table":
            continue
        verdict = "[red]drift[/red]" if row.get("drift_detected") else "ok"
        drift.add_row(
            row["column_name"],
            _fmt(row.get("drift_method")),
            _fmt(row.get("drift_score")),
            _fmt(row.get("drift_threshold")),
            verdict,
        )
    console.print(drift)
    quality = Table("metric", "value", header_style="bold cyan", title="table")
    for metric, value in view.table.items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and metric != "logging_table_commit_version":
            quality.add_row(metric, _fmt(value))
    console.print(quality)


@app.command("alerts")
def alerts_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="A monitor (default: all).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N moves.")] = 20,
) -> None:
    """Alert rules' current states, and their newest state moves."""
    from lakeforge.monitoring import alert_history, alert_states

    ws = workspace(ctx)
    now = Table("monitor", "rule", "state", "since", "value", header_style="bold cyan")
    for state in alert_states(ws, name):
        colour = "red" if state.state == "triggered" else "green"
        now.add_row(
            state.monitor,
            state.rule,
            f"[{colour}]{state.state}[/{colour}]",
            _fmt(state.since),
            _fmt(state.value),
        )
    if not now.rows:
        now.caption = "no alert evaluated yet"
    console.print(now)
    history = Table(
        "at",
        "monitor",
        "rule",
        "move",
        "value",
        "threshold",
        "windows",
        "event",
        header_style="bold cyan",
        title="history",
    )
    for moved in alert_history(ws, name, limit=limit):
        history.add_row(
            _fmt(moved.at),
            moved.monitor,
            moved.rule,
            f"{moved.previous} -> {moved.state}",
            _fmt(moved.value),
            f"{moved.comparator} {_fmt(moved.threshold)}",
            f"{moved.breaches} ({moved.windows})",
            _fmt(moved.event_id),
        )
    if history.rows:
        console.print(history)


@app.command("report")
def report_command(
    ctx: typer.Context,
    name: Name,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The HTML file (default: NAME.html).")
    ] = None,
) -> None:
    """Write the monitor's self-contained HTML report (charts inline, works offline)."""
    from lakeforge.monitoring import write_report

    path = write_report(workspace(ctx), name, output or Path(f"{name}.html"))
    console.print(f"report of monitor {name} written to {path}", highlight=False)
