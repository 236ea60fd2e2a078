"""Approval gate: the OS user on audit rows and alias moves, the request behind a move and
how it was made, and the kind of a request (promote or rollback).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alias_events") as batch:
        batch.add_column(sa.Column("os_user", sa.String(255), nullable=True))
        batch.add_column(sa.Column("request_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("how", sa.String(16), nullable=True))
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("os_user", sa.String(255), nullable=True))
    with op.batch_alter_table("approval_requests") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approval_requests") as batch:
        batch.drop_column("kind")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("os_user")
    with op.batch_alter_table("alias_events") as batch:
        batch.drop_column("how")
        batch.drop_column("request_id")
        batch.drop_column("os_user")
