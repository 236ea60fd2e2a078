"""The approval gate: transition requests, decisions by allowed approvers, and their audit.

A decision is one conditional UPDATE (``WHERE status = 'pending'``) in the same
transaction as the alias move's record, the audit row and the outbox event, so two
approvers racing produce exactly one decision and the loser gets a clear error.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import insert, select, update

from lakeforge._identity import current_user
from lakeforge.errors import LakeforgeError, PermissionDeniedError
from lakeforge.events import APPROVAL_DECIDED, APPROVAL_REQUESTED, Outbox
from lakeforge.registry import CHAMPION, PREVIOUS, ApprovalGrant, write_audit
from lakeforge.state import approval_requests, as_utc, audit_log

if TYPE_CHECKING:
    from lakeforge.deployment._validate import ValidationReport
    from lakeforge.project import Project, Target
    from lakeforge.registry import Registry
    from lakeforge.state import StateStore

Status = Literal["pending", "approved", "rejected"]
Kind = Literal["promote", "rollback"]
AUTO_APPROVER = "lakeforge:auto-approval"
ARCHIVED_TAG = "archived"
_ACTIONS = {"approved": "approve", "rejected": "reject"}


class ApprovalError(LakeforgeError):
    """A request that does not exist or has already been decided."""


@dataclass(frozen=True)
class Request:
    """A request to make ``model`` version ``version`` the champion of ``target``.

    ``kind`` is ``rollback`` for a request to return to the ``previous`` version.
    """

    id: int
    model: str
    version: int
    target: str
    status: Status
    requested_by: str
    requested_at: datetime
    validation: dict[str, Any] | None
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None
    kind: Kind = "promote"


@dataclass(frozen=True)
class AuditEntry:
    """One audited decision (or refused attempt)."""

    id: int
    at: datetime
    actor: str
    action: str
    outcome: str
    model: str | None
    version: int | None
    request_id: int | None
    detail: str | None
    os_user: str | None = None


class Approvals:
    """Transition requests of one target and the decisions on them."""

    def __init__(
        self, project: Project, target: Target, state: StateStore, registry: Registry
    ) -> None:
        self.project = project
        self.target = target
        self.state = state
        self.registry = registry

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        name: str,
        version: int,
        report: ValidationReport | None = None,
        *,
        kind: Kind = "promote",
        reason: str | None = None,
    ) -> Request:
        """Ask for ``version`` to become champion; an open request for it is returned as is."""
        mv = self.registry.version(name, version)
        model, number = mv.name, int(mv.version)
        engine = self.state.connect_engine()
        with engine.begin() as conn:
            existing = conn.execute(
                select(approval_requests.c.id).where(
                    approval_requests.c.model == model,
                    approval_requests.c.version == number,
                    approval_requests.c.status == "pending",
                )
            ).scalar()
            if existing is not None:
                return self.get(int(existing))
            actor = current_user()
            summary = None if report is None else json.dumps(report.summary(), sort_keys=True)
            inserted = conn.execute(
                insert(approval_requests).values(
                    model=model,
                    version=number,
                    target=self.target.name,
                    status="pending",
                    requested_by=actor,
                    requested_at=datetime.now(UTC),
                    validation=summary,
                    kind=kind,
                )
            ).inserted_primary_key
            assert inserted is not None
            request_id = int(inserted[0])
            detail = reason if kind == "promote" else f"rollback: {reason or 'no reason given'}"
            write_audit(
                conn,
                actor=actor,
                action="request",
                outcome="done",
                model=model,
                version=number,
                request_id=request_id,
                detail=detail,
            )
            Outbox(self.state).emit(
                APPROVAL_REQUESTED,
                model,
                {
                    "request_id": request_id,
                    "version": number,
                    "target": self.target.name,
                    "kind": kind,
                    "validation_passed": None if report is None else report.passed,
                },
                actor=actor,
                conn=conn,
            )
        return self.get(int(request_id))

    def request_rollback(self, name: str, *, reason: str | None = None) -> Request:
        """Ask to return ``champion`` to ``previous`` on a gated target.

        With ``rollback: auto`` in the model's policy the request is approved at once
        (by ``lakeforge:auto-approval``); with ``manual`` it waits for an approver.
        """
        model = self.registry.model_name(name)
        aliases = self.registry.aliases(model)
        if PREVIOUS not in aliases:
            raise LakeforgeError(f"cannot roll back {model}: it has no {PREVIOUS!r} version")
        champion = aliases.get(CHAMPION)
        why = f"from v{champion} to v{aliases[PREVIOUS]}" + (f": {reason}" if reason else "")
        request = self.request(model, aliases[PREVIOUS], kind="rollback", reason=why)
        if self.registry.policy(model).rollback_approval == "auto":
            return self.approve(request.id, comment="rollback: auto policy", system=True)
        return request

    def get(self, request_id: int) -> Request:
        with self.state.connect_engine().connect() as conn:
            row = conn.execute(
                select(approval_requests).where(approval_requests.c.id == request_id)
            ).first()
        if row is None:
            raise ApprovalError(f"no approval request #{request_id} in target {self.target.name!r}")
        return _request(row)

    def list(self, *, status: Status | None = None, model: str | None = None) -> list[Request]:
        """Requests, newest first."""
        query = select(approval_requests).order_by(approval_requests.c.id.desc())
        if status:
            query = query.where(approval_requests.c.status == status)
        if model:
            query = query.where(approval_requests.c.model == self.registry.model_name(model))
        with self.state.connect_engine().connect() as conn:
            return [_request(row) for row in conn.execute(query)]

    # -- decisions ------------------------------------------------------------------------

    def approve(
        self, request_id: int, *, comment: str | None = None, system: bool = False
    ) -> Request:
        """Approve: the version becomes champion and the old champion ``previous``.

        ``system=True`` is the auto-approval of an ``approval: auto`` policy.
        """
        return self._decide(request_id, "approved", comment, system=system)

    def reject(self, request_id: int, *, comment: str | None = None) -> Request:
        """Reject: the version is tagged ``archived`` (not for a rollback request)."""
        return self._decide(request_id, "rejected", comment, system=False)

    def _decide(
        self, request_id: int, decision: Status, comment: str | None, *, system: bool
    ) -> Request:
        request = self.get(request_id)
        actor = AUTO_APPROVER if system else current_user()
        if not system:
            self._authorize(request, actor, decision)
        engine = self.state.connect_engine()
        with engine.begin() as conn:
            claimed = conn.execute(
                update(approval_requests)
                .where(
                    approval_requests.c.id == request_id, approval_requests.c.status == "pending"
                )
                .values(
                    status=decision, decided_by=actor, decided_at=datetime.now(UTC), comment=comment
                )
            ).rowcount
            if claimed != 1:
                current = conn.execute(
                    select(approval_requests).where(approval_requests.c.id == request_id)
                ).first()
                assert current is not None
                raise ApprovalError(
                    f"approval request #{request_id} was already {current.status} by "
                    f"{current.decided_by} at {current.decided_at}; it cannot be decided twice"
                )
            what = "rollback approval" if request.kind == "rollback" else "approval"
            reason = f"{what} #{request_id}" + (f": {comment}" if comment else "")
            if decision == "approved":
                self.registry.set_alias(
                    request.model,
                    CHAMPION,
                    request.version,
                    reason=reason,
                    conn=conn,
                    grant=ApprovalGrant(request_id),
                )
            elif request.kind == "promote":  # a rejected rollback leaves its version be
                self.registry.client.set_model_version_tag(
                    request.model, str(request.version), ARCHIVED_TAG, "true"
                )
            write_audit(
                conn,
                actor=actor,
                action=_ACTIONS[decision],
                outcome="done",
                model=request.model,
                version=request.version,
                request_id=request_id,
                detail=comment,
            )
            Outbox(self.state).emit(
                APPROVAL_DECIDED,
                request.model,
                {
                    "request_id": request_id,
                    "version": request.version,
                    "decision": decision,
                    "comment": comment,
                },
                actor=actor,
                conn=conn,
            )
        return self.get(request_id)

    def _authorize(self, request: Request, actor: str, decision: Status) -> None:
        policy = self.registry.policy(request.model)
        allowed = self.approvers(request.model)
        problem = None
        if policy.approvers and actor not in allowed:  # an empty group admits nobody
            problem = (
                f"{actor!r} may not decide requests in target {self.target.name!r} "
                f"(approvers: {', '.join(sorted(allowed))})"
            )
        elif policy.separation_of_duties and actor == request.requested_by:
            problem = (
                f"{actor!r} requested #{request.id} and cannot decide it: target "
                f"{self.target.name!r} requires separation of duties"
            )
        if problem is None:
            return
        with self.state.connect_engine().begin() as conn:
            write_audit(
                conn,
                actor=actor,
                action=_ACTIONS[decision],
                outcome="refused",
                model=request.model,
                version=request.version,
                request_id=request.id,
                detail=problem,
            )
        raise PermissionDeniedError(problem)

    def approvers(self, model: str | None = None) -> set[str]:
        """The users ``model``'s policy (default: the target's) names, groups expanded.

        An ``approval: auto`` policy may name none (then anyone may decide); a manual one
        must name someone, or the project does not load.
        """
        policy = self.target.deployment if model is None else self.registry.policy(model)
        users: set[str] = set()
        for entry in policy.approvers:
            if entry.startswith("group:"):
                users |= set(self.project.config.groups.get(entry.removeprefix("group:"), []))
            else:
                users.add(entry)
        return users

    # -- audit ----------------------------------------------------------------------------

    def audit(self, model: str | None = None) -> builtins.list[AuditEntry]:
        """Audited decisions and refusals, oldest first."""
        query = select(audit_log).order_by(audit_log.c.id)
        if model:
            query = query.where(audit_log.c.model == self.registry.model_name(model))
        with self.state.connect_engine().connect() as conn:
            return [
                AuditEntry(
                    r.id,
                    as_utc(r.at),
                    r.actor,
                    r.action,
                    r.outcome,
                    r.model,
                    r.version,
                    r.request_id,
                    r.detail,
                    r.os_user,
                )
                for r in conn.execute(query)
            ]


def _request(row: Any) -> Request:
    return Request(
        id=row.id,
        model=row.model,
        version=row.version,
        target=row.target,
        status=row.status,
        requested_by=row.requested_by,
        requested_at=as_utc(row.requested_at),
        validation=json.loads(row.validation) if row.validation else None,
        decided_by=row.decided_by,
        decided_at=None if row.decided_at is None else as_utc(row.decided_at),
        comment=row.comment,
        kind=row.kind or "promote",
    )
