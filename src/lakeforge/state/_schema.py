"""SQLAlchemy tables of the state store. Alembic migrations under ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

ingest_files = Table(
    "ingest_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", String(255), nullable=False),
    Column("path", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | loaded | failed
    Column("batch", BigInteger, nullable=True),
    Column("table_version", BigInteger, nullable=True),
    Column("rows", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("table_name", "path", name="uq_ingest_files_table_path"),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False),
    Column("alias", String(64), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(255), nullable=False),
    Column("reason", Text, nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("os_user", String(255), nullable=True),  # who ran it; actor is the claimed user
    Column("request_id", Integer, nullable=True),  # the approval request that moved it
    Column("how", String(16), nullable=True),  # direct | approval | emergency | outside
    Index("ix_alias_events_model", "model", "id"),
)

# The transactional outbox (``lakeforge.events``): events commit with the state change they
# describe; consumers (webhooks, internal triggers) read them in id order behind a cursor.
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("payload", Text, nullable=False),  # JSON object
    Column("actor", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_events_type", "type", "id"),
    Index("ix_events_subject", "subject", "id"),
    sqlite_autoincrement=True,  # ids never reused, so a cursor never skips an event
)

event_cursors = Table(
    "event_cursors",
    metadata,
    Column("consumer", String(255), primary_key=True),
    Column("last_event_id", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),  # consecutive failures on the next event
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("lease_owner", String(64), nullable=True),  # the process consuming right now
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook", String(255), nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_webhook_deliveries_webhook", "webhook", "event_id"),
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("target", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | approved | rejected
    Column("requested_by", String(255), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("validation", Text, nullable=True),  # JSON summary of the validation report
    Column("decided_by", String(255), nullable=True),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("comment", Text, nullable=True),
    Column("kind", String(16), nullable=True),  # promote (default) | rollback
    Index("ix_approval_requests_model", "model", "version"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),  # done | refused
    Column("model", String(255), nullable=True),
    Column("version", Integer, nullable=True),
    Column("request_id", Integer, nullable=True),
    Column("detail", Text, nullable=True),
    Column("os_user", String(255), nullable=True),  # who ran it; actor is the claimed user
    Index("ix_audit_log_model", "model", "id"),
)

job_runs = Table(
    "job_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job", String(255), nullable=False),
    Column(
        "status", String(16), nullable=False
    ),  # queued running succeeded failed canceled skipped
    Column("trigger", String(255), nullable=False),
    Column("trigger_info", Text, nullable=True),  # JSON: the event or time that fired it
    Column("parameters", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("cancel_requested", Boolean, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("runner", String(255), nullable=True),  # host:pid of the process running it
    Column("deployment_id", Integer, nullable=True),  # deployments.id; None: the working copy
    Column("code_commit", String(64), nullable=True),  # the git commit of the code it ran
    Index("ix_job_runs_job", "job", "id"),
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, nullable=False),
    Column("task", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("error", Text, nullable=True),
    Column("task_values", Text, nullable=True),  # JSON returned by the task
    Column("log_path", Text, nullable=True),
    # BOOT:PGID:START of the running attempt's process group: recovery kills what is left
    Column("process", String(128), nullable=True),
    UniqueConstraint("run_id", "task", name="uq_task_runs_run_task"),
)

job_settings = Table(
    "job_settings",
    metadata,
    Column("job", String(255), primary_key=True),
    Column("paused", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

trigger_fires = Table(
    "trigger_fires",
    metadata,
    Column("job", String(255), primary_key=True),
    Column("fire_key", String(255), primary_key=True),  # e.g. cron:2026-01-01T06:00Z, event:42
    Column("run_id", Integer, nullable=True),
    Column("fired_at", DateTime(timezone=True), nullable=False),
)

trigger_state = Table(
    "trigger_state",
    metadata,
    Column("job", String(255), primary_key=True),
    Column("trigger", String(255), primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("until", DateTime(timezone=True), nullable=False),
)

deployed_resources = Table(
    "deployed_resources",
    metadata,
    Column("kind", String(32), primary_key=True),  # job | table
    Column("name", String(255), primary_key=True),
    Column("deployed_name", String(255), nullable=False),
    Column("spec_hash", String(64), nullable=False),
    Column("spec", Text, nullable=False),
    Column("deployed_by", String(255), nullable=False),
    Column("deployed_at", DateTime(timezone=True), nullable=False),
)

deployments = Table(  # the code snapshots `lakeforge deploy` wrote; the newest is current
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("snapshot", String(64), nullable=False),  # folder name under <root>/deployments
    Column("commit", String(64), nullable=True),  # None: the project is not a git checkout
    Column("dirty", Boolean, nullable=False),  # uncommitted changes were snapshotted
    Column("content_hash", String(64), nullable=False),  # sha256 over the snapshot's files
    Column("path", Text, nullable=False),
    Column("deployed_by", String(255), nullable=False),
    Column("deployed_at", DateTime(timezone=True), nullable=False),
)

feature_publishes = Table(
    "feature_publishes",
    metadata,
    Column("feature_table", String(255), primary_key=True),
    Column("store", String(255), primary_key=True),  # the online store URI (no password)
    Column("version", Integer, nullable=False),  # the Delta version last published
    Column("published_at", DateTime(timezone=True), nullable=False),
)

# Monitor alerts (``lakeforge.monitoring``): each rule's state, moved by a compare-and-set on
# ``seq`` in the same transaction as its history row and its ``monitor.alert`` event.
monitor_alerts = Table(
    "monitor_alerts",
    metadata,
    Column("monitor", String(255), primary_key=True),
    Column("rule", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # ok | triggered | resolved
    Column("seq", Integer, nullable=False),  # transitions so far
    Column("value", Float, nullable=True),
    Column("window_start", DateTime(timezone=True), nullable=True),
    Column("window_end", DateTime(timezone=True), nullable=True),
    Column("since", DateTime(timezone=True), nullable=False),
    Column("evaluated_at", DateTime(timezone=True), nullable=False),
)

monitor_alert_history = Table(
    "monitor_alert_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("monitor", String(255), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("previous", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("metric", String(255), nullable=False),
    Column("column_name", String(255), nullable=False),
    Column("comparator", String(2), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("value", Float, nullable=True),
    Column("breaches", Integer, nullable=False),
    Column("windows", String(32), nullable=False),  # "2 of last 3"
    Column("window_start", DateTime(timezone=True), nullable=True),
    Column("window_end", DateTime(timezone=True), nullable=True),
    Column("event_id", Integer, nullable=True),  # its monitor.alert event
    Column("at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("monitor", "rule", "seq", name="uq_monitor_alert_history_seq"),
    Index("ix_monitor_alert_history_monitor", "monitor", "id"),
)
