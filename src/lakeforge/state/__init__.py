"""The control-plane state store (SQLAlchemy 2 + Alembic; SQLite or PostgreSQL)."""

from lakeforge.state._lease import Heartbeat, Holder, Lease, process_owner
from lakeforge.state._schema import (
    alias_events,
    approval_requests,
    audit_log,
    deployed_resources,
    event_cursors,
    events,
    feature_publishes,
    ingest_files,
    job_runs,
    job_settings,
    leases,
    metadata,
    task_runs,
    trigger_fires,
    trigger_state,
    webhook_deliveries,
)
from lakeforge.state._store import StateStore, as_utc, head_revision, upsert

__all__ = [
    "Heartbeat",
    "Holder",
    "Lease",
    "StateStore",
    "alias_events",
    "approval_requests",
    "as_utc",
    "audit_log",
    "deployed_resources",
    "event_cursors",
    "events",
    "feature_publishes",
    "head_revision",
    "ingest_files",
    "job_runs",
    "job_settings",
    "leases",
    "metadata",
    "process_owner",
    "task_runs",
    "trigger_fires",
    "trigger_state",
    "upsert",
    "webhook_deliveries",
]
