"""Rendering Arrow results: a Rich table on the terminal, or CSV, JSON and Parquet."""

from __future__ import annotations

import io
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeforge._console import rich_table
from lakeforge.cli._context import console
from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    import pyarrow as pa


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _flat(data: pa.Table) -> pa.Table:
    """CSV holds no nested values: lists, structs and maps become JSON text."""
    import pyarrow as pa

    columns = []
    for column in data.columns:
        if pa.types.is_nested(column.type):
            values = column.to_pylist(maps_as_pydicts="lossy")
            column = pa.array(
                [None if v is None else json.dumps(v, default=_json_default) for v in values],
                pa.string(),
            )
        columns.append(column)
    return pa.table(columns, names=data.column_names)


def render(data: pa.Table, fmt: OutputFormat, output: Path | None, *, max_rows: int = 50) -> None:
    """Write ``data`` in ``fmt`` to ``output`` (or stdout)."""
    if fmt is OutputFormat.parquet:
        if output is None:
            raise LakeforgeError("--format parquet needs an output file: pass -o FILE")
        import pyarrow.parquet as pq

        pq.write_table(data, output)
        console.print(f"wrote {data.num_rows} rows to {output}")
        return
    if fmt is OutputFormat.table:
        if output is not None:
            raise LakeforgeError(
                "--format table prints to the terminal; use csv, json or parquet with -o"
            )
        console.print(rich_table(data, max_rows=max_rows))
        return
    if fmt is OutputFormat.csv:
        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(_flat(data), buffer)
        text = buffer.getvalue().decode()
    else:
        rows = data.to_pylist(maps_as_pydicts="lossy")
        text = json.dumps(rows, default=_json_default, indent=None) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"wrote {data.num_rows} rows to {output}")
