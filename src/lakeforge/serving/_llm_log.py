"""The LLM log tables: one row per request, and usage per endpoint, route, user and minute.

``<log_table>`` has the shape of Mosaic AI Gateway's payload table. Rows travel through
the serving spool (:mod:`lakeforge.serving._inference_log`): durable once the response
is sent, written to Delta exactly once.

``<log_table>_usage`` is computed on flush from the rows being committed: each flush
appends, per (endpoint, route, user, 1-minute window), the requests, errors (status >=
400), tokens and cost of that batch. A window that spans flushes (or workers) has one
row per batch: sum by window to read it, e.g.::

    SELECT window_start, route, user, SUM(requests), SUM(cost)
    FROM serving.assistant_llm_requests_usage GROUP BY ALL

Both tables carry the spool's Delta transaction ids (their own, per table): the usage
rows of a batch are committed first, then its payload rows, then its segments are
deleted; a crash between any two steps repeats none of them.

Credentials never reach these rows: ``request`` is the client's body (which holds none)
and the gateway's upstream headers are never logged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.serving._inference_log import commit as commit_segments
from lakeforge.serving._inference_log import pending, read_all, to_table, transactions

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.llm import GatewayResult

SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("client_request_id", pa.string()),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("timestamp_ms", pa.int64(), nullable=False),
        pa.field("endpoint_name", pa.string(), nullable=False),
        pa.field("route", pa.string()),
        pa.field("model", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("prompt", pa.string()),
        pa.field("status_code", pa.int32(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("attempts", pa.int32(), nullable=False),
        pa.field("input_tokens", pa.int64(), nullable=False),
        pa.field("output_tokens", pa.int64(), nullable=False),
        pa.field("total_tokens", pa.int64(), nullable=False),
        pa.field("cost", pa.float64()),
        pa.field("cached", pa.bool_(), nullable=False),
        pa.field("user", pa.string()),
        pa.field("request", pa.string()),
        pa.field("response", pa.string()),
        pa.field("error", pa.string()),
    ]
)
USAGE_SCHEMA = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("window_start", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("endpoint_name", pa.string(), nullable=False),
        pa.field("route", pa.string()),
        pa.field("user", pa.string()),
        pa.field("requests", pa.int64(), nullable=False),
        pa.field("errors", pa.int64(), nullable=False),
        pa.field("input_tokens", pa.int64(), nullable=False),
        pa.field("output_tokens", pa.int64(), nullable=False),
        pa.field("total_tokens", pa.int64(), nullable=False),
        pa.field("cost", pa.float64()),
    ]
)
_APP = "lakeforge-llm/"
_KEYS = ["window_ms", "endpoint_name", "route", "user"]
_SUMS = ["requests", "errors", "input_tokens", "output_tokens", "total_tokens", "cost"]
WINDOW_MS = 60_000


def usage_table(table: str) -> str:
    """The usage table of the payload table ``table``."""
    return f"{table}_usage"


def create_tables(ws: Workspace, table: str) -> None:
    """Create the payload and usage tables (partitioned by date) if they do not exist."""
    ws.tables.create(
        table,
        SCHEMA,
        partition_by=["date"],
        comment="LLM payload table: one row per gateway request",
        if_not_exists=True,
    )
    ws.tables.create(
        usage_table(table),
        USAGE_SCHEMA,
        partition_by=["date"],
        comment="LLM usage: requests, errors, tokens and cost per endpoint, route, user "
        "and minute (one row per flushed batch: sum by window)",
        if_not_exists=True,
    )


def record(
    result: GatewayResult,
    *,
    request_id: str,
    client_request_id: str | None,
    user: str | None,
    request: bytes,
) -> dict[str, Any]:
    """The payload row of one answered request."""
    return {
        "request_id": request_id,
        "client_request_id": client_request_id,
        "timestamp_ms": time.time_ns() // 1_000_000,
        "endpoint_name": result.endpoint,
        "route": result.route,
        "model": result.model,
        "provider": result.provider,
        "prompt": result.prompt,
        "status_code": result.status,
        "latency_ms": round(result.latency_ms, 3),
        "attempts": result.attempts,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
        "cost": result.cost,
        "cached": result.cached,
        "user": user,
        "request": request.decode("utf-8", "replace"),
        "response": None if result.body is None else orjson.dumps(result.body).decode(),
        "error": result.error,
    }


def commit(ws: Workspace, table: str, paths: list[Path]) -> int:
    """Write ``paths`` to the usage table, then to ``table``, each exactly once; delete
    them; return the payload rows written (a :data:`Committer`)."""
    if not paths:
        return 0
    usage = usage_table(table)
    todo, _, newest = pending(ws.tables.delta(usage), paths, _APP)
    records = read_all(todo)
    if records:
        ws.tables.write(
            usage,
            aggregate(records),
            mode="append",
            quality_log=False,
            commit_properties=transactions(_APP, newest),
        )
    return commit_segments(ws, table, paths, schema=SCHEMA, app=_APP)


def aggregate(records: list[dict[str, Any]]) -> pa.Table:
    """Usage rows of ``records``: per 1-minute window, endpoint, route and user."""
    rows = to_table(records, SCHEMA)
    stamps = rows.column("timestamp_ms")
    status = rows.column("status_code")
    rows = rows.append_column(
        "window_ms", pc.multiply(pc.divide(stamps, WINDOW_MS), WINDOW_MS)
    )  # integer division: floor for these (positive) stamps
    rows = rows.append_column("requests", pa.repeat(1, len(rows)).cast(pa.int64()))
    rows = rows.append_column("errors", pc.cast(pc.greater_equal(status, 400), pa.int64()))
    grouped = rows.group_by(_KEYS, use_threads=False).aggregate([(c, "sum") for c in _SUMS])
    window = grouped.column("window_ms").cast(pa.timestamp("ms", tz="UTC"))
    columns = {
        "date": window.cast(pa.date32()),
        "window_start": window,
        "endpoint_name": grouped.column("endpoint_name"),
        "route": grouped.column("route"),
        "user": grouped.column("user"),
        **{c: grouped.column(f"{c}_sum") for c in _SUMS},
    }
    return pa.table(columns).cast(USAGE_SCHEMA)
