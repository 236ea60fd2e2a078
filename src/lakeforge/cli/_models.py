"""``lakeforge models ...`` and ``lakeforge mlflow ui``: the registry and MLflow's own UI."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace
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


@app.command()
def alias(
    ctx: typer.Context,
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="champion, challenger, previous or your own.")],
    version: Annotated[int | None, typer.Argument(help="Version to point the alias at.")] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False,
    reason: Reason = None,
) -> None:
    """Set, move or remove an alias (moving champion makes the old one previous)."""
    registry = workspace(ctx).models
    if delete:
        _print_events([registry.remove_alias(name, alias, reason=reason)])
        return
    if version is None:
        raise typer.BadParameter("give a VERSION, or --delete", param_hint="VERSION")
    events = registry.set_alias(name, alias, version, reason=reason)
    if events:
        _print_events(events)
    else:
        console.print(f"{name}@{alias} already at v{version}")


@app.command()
def rollback(ctx: typer.Context, name: NameArg, reason: Reason = None) -> None:
    """Move champion back to the previous version."""
    _print_events(workspace(ctx).models.rollback(name, reason=reason))


@app.command()
def history(ctx: typer.Context, name: NameArg) -> None:
    """Every alias move and approval decision of a model: who, when, what and why."""
    ws = workspace(ctx)
    rows = [
        (
            e.at,
            e.alias,
            f"{'none' if e.from_version is None else f'v{e.from_version}'} -> "
            f"{'removed' if e.to_version is None else f'v{e.to_version}'}",
            e.actor,
            e.reason or "",
        )
        for e in ws.models.history(name)
    ]
    rows += [
        (a.at, f"{a.action} #{a.request_id}", f"v{a.version} {a.outcome}", a.actor, a.detail or "")
        for a in ws.approvals.audit(name)
    ]
    table = Table("when", "what", "change", "who", "why", header_style="bold cyan")
    for at, what, change, who, why in sorted(rows, key=lambda row: row[0]):
        table.add_row(at.isoformat(timespec="seconds"), what, change, who, why)
    console.print(table)


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
    os.execv(sys.executable, command)  # MLflow's own server takes over this process


def _ms(timestamp: int | None) -> str:
    from datetime import UTC, datetime

    if not timestamp:
        return ""
    return datetime.fromtimestamp(timestamp / 1000, UTC).isoformat(timespec="seconds")
