"""``lakeforge prompts ...``: prompt versions, aliases, diffs and copies in a target."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace

app = typer.Typer(
    help="Prompts of LLM endpoints: versions, aliases, diffs, copies.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="Prompt name: catalog.schema.name.")]
RefArg = Annotated[
    str,
    typer.Argument(
        help="NAME (newest), NAME/VERSION or NAME@ALIAS, e.g. dev.prompts.support@prod."
    ),
]


@app.command("list")
def list_prompts(ctx: typer.Context) -> None:
    """Prompts of the target, with their newest version and aliases."""
    table = Table("prompt", "latest", "aliases", "description", header_style="bold cyan")
    for info in workspace(ctx).prompts.list():
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(info.aliases.items()))
        table.add_row(info.name, str(info.latest), aliases, (info.description or "")[:60])
    console.print(table)


@app.command()
def show(ctx: typer.Context, ref: RefArg) -> None:
    """A prompt version: aliases, commit message, tags, and its template."""
    from lakeforge.llm import template_text

    version = workspace(ctx).prompts.load(ref)
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, UTC)
    aliases = ", ".join(sorted(version.aliases)) or "none"
    console.print(f"[bold]{version.name} v{version.version}[/bold]  aliases: {aliases}")
    console.print(f"created: {created.isoformat(timespec='seconds')}", highlight=False)
    if version.commit_message:
        console.print(f"message: {version.commit_message}", markup=False, highlight=False)
    for key, value in sorted(version.tags.items()):
        console.print(f"tag {key}: {value}", markup=False, highlight=False)
    console.rule()
    console.print(template_text(version), markup=False, highlight=False, soft_wrap=True)


@app.command()
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="The older version: NAME/VERSION or NAME@ALIAS.")],
    b: Annotated[str, typer.Argument(help="The newer version: NAME/VERSION or NAME@ALIAS.")],
) -> None:
    """A unified diff of two versions' templates."""
    text = workspace(ctx).prompts.diff(a, b)
    console.print(text.rstrip("\n") or "no difference", markup=False, highlight=False)


@app.command()
def alias(
    ctx: typer.Context,
    name: NameArg,
    alias: Annotated[str, typer.Argument(help="The alias, e.g. production.")],
    version: Annotated[int, typer.Argument(help="Version to point the alias at.")],
) -> None:
    """Point an alias at a version (LLM endpoints using NAME@ALIAS follow within seconds)."""
    prompts = workspace(ctx).prompts
    qualified = prompts.prompt_name(name)
    before = prompts.aliases(qualified).get(alias)
    prompts.set_alias(qualified, alias, version)
    if before == version:
        console.print(f"{qualified}@{alias} already at v{version}", highlight=False)
    else:
        old = "none" if before is None else f"v{before}"
        console.print(f"{qualified}@{alias}: {old} -> v{version}", highlight=False)


@app.command()
def register(
    ctx: typer.Context,
    name: NameArg,
    file: Annotated[
        Path, typer.Option("--file", "-f", help="The template, a text file ({{var}} slots).")
    ],
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="What changed (the commit message).")
    ] = None,
) -> None:
    """Register a template file as the next version of a prompt."""
    version = workspace(ctx).prompts.register(
        name, file.read_text(encoding="utf-8"), commit_message=message
    )
    console.print(f"registered {version.name} version {version.version}", highlight=False)


@app.command()
def copy(
    ctx: typer.Context,
    ref: RefArg,
    to: Annotated[str, typer.Option("--to", help="Target to copy into, e.g. staging.")],
) -> None:
    """Copy a prompt version into another target's registry."""
    copied = workspace(ctx).prompts.copy(ref, to=to)
    console.print(f"copied {ref} to {copied.name} version {copied.version}", highlight=False)
