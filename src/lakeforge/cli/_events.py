"""``lakeforge events ...``: the event outbox, and the webhook dispatcher."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lakeforge.cli._context import console, err_console, sigterm_interrupts, workspace

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.events import DeliveryReport, WebhookConfig

app = typer.Typer(help="Events: what happened, and webhook delivery.", no_args_is_help=True)


def webhooks_for(ws: Workspace) -> list[WebhookConfig]:
    """The webhooks ``lakeforge.yaml`` declares (none until the project config has them)."""
    return list(getattr(ws.project.config, "webhooks", None) or [])


@app.command("list")
def list_events(
    ctx: typer.Context,
    type: Annotated[
        str | None, typer.Option("--type", help="Event type, or a glob: 'approval.*'.")
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Subject, e.g. a model name.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N events.")] = 50,
) -> None:
    """The newest events of the target, oldest first."""
    from lakeforge.events import Outbox

    found = Outbox(workspace(ctx).state).list(type=type, subject=subject, limit=limit)
    table = Table("id", "type", "subject", "actor", "at", "payload", header_style="bold cyan")
    for event in found:
        table.add_row(
            str(event.id),
            event.type,
            event.subject,
            event.actor,
            event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            json.dumps(event.payload, separators=(",", ":"))[:80],
        )
    if not found:
        table.caption = "no events"
    console.print(table)


@app.command()
def deliver(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between passes.")] = 1.0,
) -> None:
    """POST pending events to the project's webhooks (until Ctrl-C, or --once)."""
    ws = workspace(ctx)
    webhooks = webhooks_for(ws)
    if not webhooks:
        console.print("no webhooks declared in lakeforge.yaml: nothing to deliver")
        return

    from lakeforge.events import Outbox, run_dispatcher

    def show(report: DeliveryReport) -> None:
        if once and not report.delivered and not report.failed:
            console.print("no pending events")
        for name, count in report.delivered.items():
            console.print(f"{name}: delivered {count} event{'s' * (count != 1)}")
        for name, error in report.failed.items():
            err_console.print(f"[yellow]{name}[/yellow]: {error} (will retry)", highlight=False)

    names = ", ".join(w.name for w in webhooks)
    if not once:
        console.print(f"delivering events of target {ws.target.name} to {names}; Ctrl-C stops")
    with sigterm_interrupts():
        try:
            run_dispatcher(
                Outbox(ws.state), webhooks, interval_s=interval, once=once, on_report=show
            )
        except KeyboardInterrupt:
            console.print("stopped")
