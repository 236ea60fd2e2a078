"""``lakeforge serve`` and ``lakeforge endpoints ...``: online model serving."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace

app = typer.Typer(help="Serving endpoints: list them, make bearer tokens.", no_args_is_help=True)


def serve_command(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            "-e",
            help="Serve only these (repeat -e): endpoint and LLM endpoint names, and vector "
            "index names as declared (schema.name). Default: all of them.",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Serve one model, NAME@ALIAS or NAME/VERSION, without declaring it."),
    ] = None,
) -> None:
    """Serve the target's endpoints (MLflow and V2 protocols, /metrics), its LLM endpoints
    (OpenAI-compatible API under /v1) and its vector indexes (POST
    /vector-indexes/NAME/query): on a production-mode target those of its current
    deployment, on a development-mode one those in lakeforge.yaml. Vector indexes serve
    alone too; -e selects among all three kinds by name."""
    from lakeforge.bundle import served_endpoints
    from lakeforge.serving import endpoint_for_model, prepare, select_endpoints, serve

    ws = workspace(ctx)
    source = "the command line"
    if model is None:
        served = served_endpoints(ws)
        source = served.source
        endpoints = select_endpoints(served.endpoints, endpoint, source=source)
    else:
        endpoints = dict([endpoint_for_model(model)])
    recovered = prepare(ws, endpoints)
    for name, rows in recovered.items():
        if rows:
            console.print(f"{name}: recovered {rows} spooled inference log row(s)")
    names = ", ".join(endpoints)
    console.print(
        f"serving {names} (target {ws.target.name}, from {source}) on http://{host}:{port} "
        f"with {workers} worker(s); Ctrl+C stops"
    )
    serve(ws, endpoints, host=host, port=port, workers=workers)


@app.command("list")
def list_endpoints(ctx: typer.Context) -> None:
    """The endpoints declared in lakeforge.yaml and what they serve."""
    ws = workspace(ctx)
    table = Table("endpoint", "entity", "model", "ref", "traffic", header_style="bold cyan")
    for name, spec in ws.project.config.endpoints.items():
        for entity in spec.served_entities:
            ref = f"@{entity.alias}" if entity.alias else f"v{entity.version}"
            table.add_row(name, entity.entity_name, entity.model, ref, f"{entity.traffic:g}%")
        if spec.shadow is not None:
            ref = f"@{spec.shadow.alias}" if spec.shadow.alias else f"v{spec.shadow.version}"
            table.add_row(name, spec.shadow.entity_name, spec.shadow.model, ref, "shadow")
    console.print(table)


@app.command()
def token() -> None:
    """Make a bearer token; put its SHA-256 under the endpoint's auth.token_sha256."""
    value = secrets.token_urlsafe(32)
    console.print(f"token:  {value}")
    console.print(f"sha256: {hashlib.sha256(value.encode()).hexdigest()}")
