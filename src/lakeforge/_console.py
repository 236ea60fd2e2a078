"""Showing Arrow results on a terminal: shared by the CLI and the demo (a leaf module)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    import pyarrow as pa


def rich_table(data: pa.Table, *, title: str | None = None, max_rows: int = 50) -> Table:
    """The first ``max_rows`` rows of ``data`` as a Rich table; nulls show as ∅."""
    table = Table(title=title, show_lines=False, header_style="bold cyan")
    for name in data.column_names:
        table.add_column(name, overflow="fold")
    for row in data.slice(0, max_rows).to_pylist():
        table.add_row(*("∅" if v is None else str(v) for v in row.values()))
    if data.num_rows > max_rows:
        table.caption = f"{max_rows} of {data.num_rows} rows shown"
    return table
