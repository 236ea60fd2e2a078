"""The control-plane state store (SQLAlchemy 2 + Alembic; SQLite or PostgreSQL)."""

from lakeforge.state._schema import (
    alias_events,
    approval_requests,
    audit_log,
    event_cursors,
    events,
    ingest_files,
    job_runs,
    job_settings,
    metadata,
    task_runs,
    webhook_deliveries,
)
from lakeforge.state._store import StateStore, as_utc, head_revision

__all__ = [
    "StateStore",
    "alias_events",
    "approval_requests",
    "as_utc",
    "audit_log",
    "event_cursors",
    "events",
    "head_revision",
    "ingest_files",
    "job_runs",
    "job_settings",
    "metadata",
    "task_runs",
    "webhook_deliveries",
]
