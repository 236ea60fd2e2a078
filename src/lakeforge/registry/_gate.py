"""The approval gate on ``champion`` and ``previous``: grants, refusals and break-glass.

On a target whose policy for a model is ``approval: manual``, these aliases move only
with the grant of a decided approval request (checked in the decision's transaction)
or as an audited emergency move; any other move is refused and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from lakeforge._identity import current_user
from lakeforge.errors import LakeforgeError, PermissionDeniedError
from lakeforge.registry._audit import write_audit
from lakeforge.state import alias_events, approval_requests

if TYPE_CHECKING:
    from lakeforge.state import StateStore

CHAMPION = "champion"
PREVIOUS = "previous"
GATED_ALIASES = (CHAMPION, PREVIOUS)
"""Aliases that move only through the approval gate on a target with ``approval: manual``."""


@dataclass(frozen=True)
class ApprovalGrant:
    """What an approval decision passes to move a gated alias: its request's id.

    The registry honors it only inside the decision's transaction, for an approved
    request of that model and version, once.
    """

    request_id: int


def check_emergency(emergency: bool, reason: str | None) -> None:
    """A break-glass move needs a reason, kept in the audit log and the history."""
    if emergency and not (reason and reason.strip()):
        raise LakeforgeError(
            "an emergency move needs a reason (--reason TEXT, or reason=... in the SDK); "
            "it is audited"
        )


def check_grant(
    conn: Connection | None,
    model: str,
    alias: str,
    new: int | None,
    grant: ApprovalGrant,
) -> None:
    """A grant is honored only in the transaction that approved its request.

    The request must be approved, for this model (and for ``champion``, this version),
    and ``champion`` must not have moved for it or since its decision: a grant is
    good for one move of ``champion`` (and the ``previous`` move that comes with it).
    """
    problem = None
    if conn is None:
        problem = "an approval grant is honored only inside its decision's transaction"
    else:
        request = conn.execute(
            select(approval_requests).where(approval_requests.c.id == grant.request_id)
        ).first()
        if request is None or request.status != "approved" or request.model != model:
            problem = f"request #{grant.request_id} is not an approved request for {model}"
        elif alias == CHAMPION and request.version != new:
            problem = f"approval #{grant.request_id} names v{request.version}, not v{new}"
        elif (
            conn.execute(
                select(alias_events.c.id).where(
                    alias_events.c.model == model,
                    alias_events.c.alias == CHAMPION,
                    (alias_events.c.request_id == grant.request_id)
                    | (alias_events.c.at > request.decided_at),
                )
            ).first()
            is not None
        ):
            problem = f"approval #{grant.request_id} was already used"
    if problem is not None:
        raise PermissionDeniedError(f"{model}@{alias}: {problem}")


def refuse(
    state: StateStore, target: str, model: str, alias: str, new: int | None, action: str
) -> None:
    """Audit a refused move of a gated alias and raise, naming the commands to use."""
    message = (
        f"{model}@{alias} is gated in target {target!r} (approval: manual): it moves "
        "only through a decided approval request"
    )
    if action == "rollback":
        hint = (
            f"`lakeforge -t {target} models rollback {model}` files a rollback request "
            f"(SDK: ws.approvals.request_rollback), then `lakeforge -t {target} approvals "
            "approve ID`"
        )
    else:
        hint = (
            f"`lakeforge -t {target} models deploy {model} VERSION`, then "
            f"`lakeforge -t {target} approvals approve ID`"
        )
    hint += "; in an emergency only: --emergency --reason TEXT (audited)"
    with state.connect_engine().begin() as conn:
        write_audit(
            conn,
            actor=current_user(),
            action=f"{action} {alias}",
            outcome="refused",
            model=model,
            version=new,
            detail=message,
        )
    raise PermissionDeniedError(message, hint=hint)
