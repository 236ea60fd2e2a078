"""``lakeforge sql``; ``lakeforge ingest`` is in ``_ingest``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lakeforge.cli._context import workspace
from lakeforge.cli._render import OutputFormat, render


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
