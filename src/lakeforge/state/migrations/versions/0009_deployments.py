"""Deploy-code: the code snapshots ``lakeforge deploy`` recorded, and on each job run the
deployment (and commit) whose code it ran.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("snapshot", sa.String(64), nullable=False),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("dirty", sa.Boolean, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("deployed_by", sa.String(255), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("deployment_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("code_commit", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("code_commit")
        batch.drop_column("deployment_id")
    op.drop_table("deployments")
