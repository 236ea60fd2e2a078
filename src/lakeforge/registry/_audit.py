"""The audit log: decisions, refusals and emergency moves, with the claimed and OS user."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert

from lakeforge._identity import os_user
from lakeforge.state import audit_log


def write_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    outcome: str,
    model: str | None,
    version: int | None,
    request_id: int | None = None,
    detail: str | None = None,
) -> None:
    """One audit row; ``actor`` is the claimed user, the OS user is recorded beside it."""
    conn.execute(
        insert(audit_log).values(
            at=datetime.now(UTC),
            actor=actor,
            os_user=os_user(),
            action=action,
            outcome=outcome,
            model=model,
            version=version,
            request_id=request_id,
            detail=detail,
        )
    )
