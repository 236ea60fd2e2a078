"""``lakeforge models ...`` and ``lakeforge mlflow ui``: the registry and MLflow's own UI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace

if TYPE_CHECKING:
    from lakeforge.registry import AliasEvent

app = typer.Typer(
    help="Registered models: versions, aliases, lineage, copies.", no_args_is_help=True
)
mlflow_app = typer.Typer(help="MLflow's own tools for a target.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Model name: catalog.schema.model.")]
RefArg = Annotated[str, typer.Argument(help="NAME/VERSION or NAME@ALIAS, e.g. dev.ml.delay/3.")]
Reason = Annotated[str | None, typer.Option(help="Why; recorded in the promotion history.")]


def _print_events(events: list[AliasEvent]) -> None:
    for event in events:
        before = "none" if event.from_version is None else f"v{event.from_version}"
        after = "removed" if event.to_version is None else f"v{event.to_version}"
        console.print(f"{event.model}@{event.alias}: {before} -> {after}")


@app.command("list")
def list_models(ctx: typer.Context) -> None:
    """Registered models of the target."""
    table = Table("model", "latest", "aliases", "description", header_style="bold cyan")
    for model in workspace(ctx).models.list():
        latest = max((int(v.version) for v in model.latest_versions), default=0)
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(model.aliases.items()))
        table.add_row(model.name, str(latest or ""), aliases, (model.description or "")[:60])
    console.print(table)


@app.command()
def versions(ctx: typer.Context, name: NameArg) -> None:
    """Versions of a model, newest first, with aliases and lineage tags."""
    registry = workspace(ctx).models
    aliases: dict[int, list[str]] = {}
    for alias, number in registry.aliases(name).items():
        aliases.setdefault(number, []).append(alias)
    table = Table(
        "version", "aliases", "created", "run", "commit", "data", header_style="bold cyan"
    )
    for version in registry.versions(name):
        tags = version.tags
        table.add_row(
            str(version.version),
            ", ".join(sorted(aliases.get(int(version.version), []))),
            _ms(version.creation_timestamp),
            (version.run_id or "")[:12],
            tags.get("lakeforge.git.commit", "")[:12],
            ", ".join(
                f"{t}@v{v}"
                for t, v in json.loads(tags.get("lakeforge.data_versions", "{}")).items()
            ),
        )
    console.print(table)


@app.command()
def lineage(ctx: typer.Context, ref: RefArg) -> None:
    """Run, code commit and exact table versions behind a model version."""
    info = workspace(ctx).models.lineage(ref)
    console.print(f"[bold]{info.model} v{info.version}[/bold]")
    console.print(f"run: {info.run_id}")
    dirty = " (uncommitted changes)" if info.dirty else ""
    console.print(f"commit: {info.commit or 'unknown'}{dirty}  branch: {info.branch or 'unknown'}")
    for table, version in sorted(info.data_versions.items()):
        console.print(f"read: {table}@v{version}")
    for table in info.feature_tables:
        console.print(f"feature table: {table}")
    if info.copied_from:
        console.print(f"copied from: {info.copied_from}")
    if info.metrics:
        console.print(
            "metrics: " + json.dumps({k: round(v, 4) for k, v in sorted(info.metrics.items())})
        )


Emergency = Annotated[
    bool,
    typer.Option(
        "--emergency",
        help="Break glass: move a gated champion without an approval (needs --reason; "
        "audited, and an event is emitted).",
    ),
]


def _warn_emergency(emergency: bool, target: str) -> None:
    if emergency:
        console.print(
            f"[bold red]EMERGENCY[/bold red]: moving a gated alias in target {target} "
            "without an approval; this is audited with your user and OS user"
        )


def print_unapproved(target: str, events: list[AliasEvent]) -> None:
    """Warn about alias moves found made in MLflow directly (now in the history)."""
    for event in events:
        before = "none" if event.from_version is None else f"v{event.from_version}"
        after = "removed" if event.to_version is None else f"v{event.to_version}"
        console.print(
            f"[bold red]UNAPPROVED[/bold red] {event.model}@{event.alias}: {before} -> "
            f"{after} was moved outside Lakeforge (recorded; see lakeforge -t {target} "
            f"models history {event.model})",
            highlight=False,
        )


@app.command()
def alias(
    ctx: typer.Context,
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="champion, challenger, previous or your own.")],
    version: Annotated[int | None, typer.Argument(help="Version to point the alias at.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    reason: Reason = None,
    emergency: Emergency = False,
) -> None:
    """Set, move or remove an alias (moving champion makes the old one previous).

    On a gated target (approval: manual) champion and previous move only through
    `models deploy` and `approvals approve`, or with --emergency --reason.
    """
    ws = workspace(ctx)
    registry = ws.models
    _warn_emergency(emergency, ws.target.name)
    if delete:
        _print_events([registry.remove_alias(name, alias, reason=reason, emergency=emergency)])
        return
    if version is None:
        raise typer.BadParameter("give a VERSION, or --delete", param_hint="VERSION")
    events = registry.set_alias(name, alias, version, reason=reason, emergency=emergency)
    if events:
        _print_events(events)
    else:
        console.print(f"{name}@{alias} already at v{version}")


@app.command()
def rollback(
    ctx: typer.Context, name: NameArg, reason: Reason = None, emergency: Emergency = False
) -> None:
    """Move champion back to the previous version (on a gated target: a rollback request)."""
    from lakeforge.deployment import rollback as roll_back

    ws = workspace(ctx)
    if emergency:
        _warn_emergency(emergency, ws.target.name)
        _print_events(ws.models.rollback(name, reason=reason, emergency=True))
        return
    result = roll_back(ws, name, reason=reason)
    _print_events(list(result.moves))
    request = result.request
    if request is not None and request.status == "pending":
        console.print(
            f"rollback requested: request #{request.id} (an approver runs: "
            f"lakeforge -t {ws.target.name} approvals approve {request.id})",
            highlight=False,
        )
    elif request is not None:
        console.print(f"rollback request #{request.id} {request.status} by {request.decided_by}")


@app.command()
def history(ctx: typer.Context, name: NameArg) -> None:
    """Every alias move and approval decision of a model: who, when, what and why.

    Aliases moved in MLflow directly are found first and shown as unapproved moves.
    """
    ws = workspace(ctx)
    print_unapproved(ws.target.name, ws.models.check_drift(name))
    rows = [
        (
            e.at,
            e.alias if e.how in ("direct", "approval") else f"{e.alias} ({_HOW[e.how]})",
            f"{'none' if e.from_version is None else f'v{e.from_version}'} -> "
            f"{'removed' if e.to_version is None else f'v{e.to_version}'}",
            _who(e.actor, e.os_user),
            e.reason or "",
        )
        for e in ws.models.history(name)
    ]
    rows += [
        (
            a.at,
            f"{a.action} #{a.request_id}" if a.request_id else a.action,
            f"v{a.version} {a.outcome}",
            _who(a.actor, a.os_user),
            a.detail or "",
        )
        for a in ws.approvals.audit(name)
    ]
    table = Table("when", "what", "change", "who", "why", header_style="bold cyan")
    for at, what, change, who, why in sorted(rows, key=lambda row: row[0]):
        table.add_row(at.isoformat(timespec="seconds"), what, change, who, why)
    console.print(table)


_HOW = {"emergency": "EMERGENCY", "outside": "UNAPPROVED, outside Lakeforge"}


def _who(actor: str, os_user: str | None) -> str:
    """The claimed user, and the OS user when it differs."""
    return actor if os_user in (None, actor) else f"{actor} (OS user {os_user})"


@app.command("delete-version")
def delete_version(
    ctx: typer.Context,
    name: NameArg,
    version: Annotated[int, typer.Argument(help="The version to delete.")],
    reason: Reason = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a model version no alias points at (its run and artifacts stay in MLflow)."""
    registry = workspace(ctx).models
    found = registry.version(name, version)
    if not yes and not typer.confirm(f"delete {found.name} v{found.version}?"):
        raise typer.Exit(1)
    registry.delete_version(name, version, reason=reason)
    console.print(f"deleted {found.name} v{found.version}")


@app.command()
def copy(
    ctx: typer.Context,
    ref: RefArg,
    to: Annotated[str, typer.Option("--to", help="Target to copy into, e.g. staging.")],
    reason: Reason = None,
) -> None:
    """Copy a model version into another target's registry (deploy-models)."""
    with console.status(f"copying {ref} to {to}"):
        copied = workspace(ctx).models.copy(ref, to=to, reason=reason)
    console.print(f"copied {ref} to {copied.name} version {copied.version}")


@mlflow_app.command()
def ui(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Open MLflow's own UI on the target's tracking store."""
    target = workspace(ctx).target
    uri = target.mlflow_tracking_uri
    if uri.startswith(("http://", "https://")):
        console.print(f"target {target.name} uses the tracking server at {uri}; open it there")
        return
    console.print(f"MLflow UI for target {target.name}: http://{host}:{port}  (Ctrl+C stops it)")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        target.mlflow_artifact_root,
        "--host",
        host,
        "--port",
        str(port),
    ]
    # MLflow's server starts workers and a job consumer, and exits on SIGTERM before they
    # do: run it as a process group of its own, signal the group, and end what is left.
    server = subprocess.Popen(command, start_new_session=True)
    stopped: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = server.wait()
    finally:
        _end_group(server.pid)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stopped and code:
        raise typer.Exit(code if code > 0 else 1)


def _end_group(pgid: int, grace_s: float = 5.0) -> None:
    """End what is left of process group ``pgid``: SIGTERM, then SIGKILL after ``grace_s``."""
    from lakeforge.jobs import live_members

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while live_members(pgid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return


def _ms(timestamp: int | None) -> str:
    from datetime import UTC, datetime

    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp / 1000, UTC).isoformat(timespec="seconds")
