"""Metric tables in the output-table contract's shape, written by hand, and a local SMTP server."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pyarrow as pa

from lakeforge import Workspace

START = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
KEYS = [
    ("window_start", TS),
    ("window_end", TS),
    ("granularity", pa.string()),
    ("model_version", pa.string()),
    ("slice_key", pa.string()),
    ("slice_value", pa.string()),
    ("column_name", pa.string()),
    ("data_type", pa.string()),
    ("monitor_name", pa.string()),
]
DRIFT = pa.schema(
    [
        *KEYS,
        ("drift_type", pa.string()),
        ("drift_method", pa.string()),
        ("drift_score", pa.float64()),
        ("drift_threshold", pa.float64()),
        ("drift_detected", pa.bool_()),
        ("drift_share", pa.float64()),
    ]
)
PROFILE = pa.schema(
    [
        *KEYS,
        ("log_type", pa.string()),
        ("count", pa.int64()),
        ("avg", pa.float64()),
        ("percent_null", pa.float64()),
        ("accuracy_score", pa.float64()),
    ]
)


def window(index: int) -> tuple[datetime, datetime]:
    return START + timedelta(days=index), START + timedelta(days=index + 1)


def drift_rows(
    scores: Sequence[float | None],
    *,
    column: str = "dep_delay",
    first: int = 0,
    drift_type: str = "BASELINE",
    slice_: tuple[str, str] | None = None,
    granularity: str = "1 day",
    monitor: str = "flights",
) -> list[dict[str, Any]]:
    """One drift row per window, from day ``first`` on, with these drift scores."""
    rows = []
    for offset, score in enumerate(scores):
        start, end = window(first + offset)
        rows.append(
            {
                "window_start": start,
                "window_end": end,
                "granularity": granularity,
                "model_version": None,
                "slice_key": None if slice_ is None else slice_[0],
                "slice_value": None if slice_ is None else slice_[1],
                "column_name": column,
                "data_type": "double",
                "monitor_name": monitor,
                "drift_type": drift_type,
                "drift_method": "wasserstein",
                "drift_score": score,
                "drift_threshold": 0.1,
                "drift_detected": None if score is None else score >= 0.1,
                "drift_share": None,
            }
        )
    return rows


def profile_rows(
    values: Sequence[float], *, column: str = ":table", metric: str = "accuracy_score"
) -> list[dict[str, Any]]:
    rows = []
    for index, value in enumerate(values):
        start, end = window(index)
        row: dict[str, Any] = {name: None for name in PROFILE.names}
        row.update(
            window_start=start,
            window_end=end,
            granularity="1 day",
            column_name=column,
            data_type="double",
            monitor_name="flights",
            log_type="INPUT",
            count=100,
        )
        row[metric] = value
        rows.append(row)
    return rows


def write_metrics(ws: Workspace, table: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Replace the metric table with ``rows``."""
    ws.tables.write(table, pa.Table.from_pylist(rows, schema=schema), mode="overwrite")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Inbox:
    """The mails a local aiosmtpd server accepted."""

    port: int
    mails: list[tuple[list[str], Message]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server(port: int | None = None) -> Iterator[Inbox]:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives."""
    from aiosmtpd.controller import Controller

    inbox = Inbox(port or free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()
