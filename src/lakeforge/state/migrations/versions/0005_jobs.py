"""Jobs: runs, task runs, settings, trigger state, scheduler lease, deployed resources.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(255), nullable=False),
        sa.Column("trigger_info", sa.Text, nullable=True),
        sa.Column("parameters", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("runner", sa.String(255), nullable=True),
    )
    op.create_index("ix_job_runs_job", "job_runs", ["job", "id"])
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("task_values", sa.Text, nullable=True),
        sa.Column("log_path", sa.Text, nullable=True),
        sa.UniqueConstraint("run_id", "task", name="uq_task_runs_run_task"),
    )
    op.create_table(
        "job_settings",
        sa.Column("job", sa.String(255), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "trigger_fires",
        sa.Column("job", sa.String(255), primary_key=True),
        sa.Column("fire_key", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "trigger_state",
        sa.Column("job", sa.String(255), primary_key=True),
        sa.Column("trigger", sa.String(255), primary_key=True),
        sa.Column("cursor", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "deployed_resources",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("deployed_name", sa.String(255), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("deployed_by", sa.String(255), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployed_resources")
    op.drop_table("leases")
    op.drop_table("trigger_state")
    op.drop_table("trigger_fires")
    op.drop_table("job_settings")
    op.drop_table("task_runs")
    op.drop_index("ix_job_runs_job", "job_runs")
    op.drop_table("job_runs")
