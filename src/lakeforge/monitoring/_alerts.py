"""Alert rules evaluated over a monitor's metric tables, and their state in the state store.

A rule's state moves ok → triggered → resolved (→ triggered again ...). A move is one
state-store transaction: a compare-and-set on the rule's ``seq`` (the number of moves so
far), its history row, and its ``monitor.alert`` event in the outbox (which drives webhooks,
the jobs' ``monitor_alert`` triggers and the email channel). Two refreshes evaluating the
same rule at once both try the same compare-and-set; one wins, the other sees the new
state, so each move is notified exactly once. Events carry the dedupe key
``<monitor>/<rule>/<seq>``.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from lakeforge.errors import LakeforgeError
from lakeforge.events import MONITOR_ALERT
from lakeforge.project import WINDOW_SIZES, AlertRule, MonitorSpec
from lakeforge.state import as_utc, monitor_alert_history, monitor_alerts

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

State = Literal["ok", "triggered", "resolved"]
_log = logging.getLogger("lakeforge.monitoring.alerts")
_ATTEMPTS: Final = 20
_COMPARE: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class Refreshed(Protocol):
    """What :func:`evaluate` needs of a refresh result: the output tables it wrote."""

    @property
    def tables(self) -> Sequence[str]:
        """The profile and drift metrics tables, in that order."""
        ...


@dataclass(frozen=True)
class Verdict:
    """One rule over its last windows: did ``breaches`` of them reach the rule's N?"""

    breached: bool
    breaches: int
    windows: int
    value: float | None  # the metric in the newest window
    window_start: datetime | None
    window_end: datetime | None


@dataclass(frozen=True)
class AlertTransition:
    """One move of a rule's state, as recorded in the alert history."""

    monitor: str
    rule: str
    seq: int
    previous: str
    state: str
    metric: str
    column_name: str
    comparator: str
    threshold: float
    value: float | None
    breaches: int
    windows: str
    window_start: datetime | None
    window_end: datetime | None
    event_id: int | None
    at: datetime

    @property
    def dedupe_key(self) -> str:
        return f"{self.monitor}/{self.rule}/{self.seq}"


@dataclass(frozen=True)
class AlertState:
    """Where a rule stands now."""

    monitor: str
    rule: str
    state: str
    seq: int
    value: float | None
    window_start: datetime | None
    window_end: datetime | None
    since: datetime
    evaluated_at: datetime


# -- evaluation -----------------------------------------------------------------------------


def check_rule(rule: AlertRule, metrics: pa.Table, *, where: str = "") -> Verdict | None:
    """Evaluate ``rule`` over its metrics table's rows; ``None`` when it has no window yet.

    A window breaches when one of its matching rows (one per model version) does; null
    values never breach, and a window with no value at all (too few rows for a drift
    verdict, say) is not one of the last ``m``: it has nothing to say.
    """
    label = f"alert {rule.name!r}{where}"
    if rule.metric not in metrics.column_names:
        raise LakeforgeError(
            f"{label}: the {rule.table} metrics have no column {rule.metric!r} "
            f"(columns: {', '.join(metrics.column_names)})"
        )
    rows = _matching(rule, metrics, label)
    if rows.num_rows == 0:
        return None
    compare = _COMPARE[rule.comparator]
    by_window: dict[tuple[datetime, datetime], list[float | None]] = {}
    for start, end, value in zip(
        rows.column("window_start").to_pylist(),
        rows.column("window_end").to_pylist(),
        rows.column(rule.metric).to_pylist(),
        strict=True,
    ):
        by_window.setdefault((start, end), []).append(None if value is None else float(value))
    decided = [key for key in sorted(by_window) if any(v is not None for v in by_window[key])]
    if not decided:
        return None
    last = decided[-rule.windows.m :]
    breaching = [
        any(v is not None and compare(v, rule.threshold) for v in by_window[key]) for key in last
    ]
    newest = by_window[last[-1]]
    value = next(
        (v for v in newest if v is not None and compare(v, rule.threshold)),
        next((v for v in newest if v is not None), None),
    )
    return Verdict(
        breached=sum(breaching) >= rule.windows.n,
        breaches=sum(breaching),
        windows=len(last),
        value=value,
        window_start=last[-1][0],
        window_end=last[-1][1],
    )


def _matching(rule: AlertRule, metrics: pa.Table, label: str) -> pa.Table:
    """The rows of the rule's column, slice, drift type, granularity and model version."""
    rows = metrics.filter(pc.equal(metrics.column("column_name"), rule.column_name))
    if rule.slice is None:
        rows = rows.filter(pc.is_null(rows.column("slice_key")))
    else:
        rows = rows.filter(
            pc.and_(
                pc.equal(rows.column("slice_key"), rule.slice.key),
                pc.equal(rows.column("slice_value"), rule.slice.value),
            )
        )
    if rule.drift_type is not None:
        rows = rows.filter(pc.equal(rows.column("drift_type"), rule.drift_type))
    if rule.model_version is not None:
        rows = rows.filter(pc.equal(rows.column("model_version"), rule.model_version))
    present = set(rows.column("granularity").to_pylist())
    granularity = rule.granularity
    if granularity is None and present:
        granularity = min(present, key=lambda g: WINDOW_SIZES.index(g) if g in WINDOW_SIZES else 99)
    elif granularity is not None and present and granularity not in present:
        raise LakeforgeError(
            f"{label}: no {granularity!r} windows in the metrics "
            f"(granularities: {', '.join(sorted(present))})"
        )
    if granularity is not None:
        rows = rows.filter(pc.equal(rows.column("granularity"), granularity))
    if pa.types.is_boolean(rows.schema.field(rule.metric).type):
        rows = rows.set_column(
            rows.column_names.index(rule.metric),
            rule.metric,
            pc.cast(rows.column(rule.metric), pa.float64()),
        )
    return rows


def evaluate(ws: Workspace, spec: MonitorSpec, result: Refreshed) -> list[AlertTransition]:
    """Evaluate every alert rule of ``spec`` on the metric tables ``result`` wrote, and move
    each rule's state; the moves made (each notified once, on the rule's channels)."""
    return evaluate_tables(ws, spec, *result.tables)


def evaluate_tables(
    ws: Workspace,
    spec: MonitorSpec,
    profile_table: str,
    drift_table: str,
    *,
    now: datetime | None = None,
) -> list[AlertTransition]:
    """:func:`evaluate` on the metric tables named."""
    if not spec.alerts:
        return []
    names = [rule.name for rule in spec.alerts]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise LakeforgeError(f"monitor {spec.name!r}: alert names repeat: {', '.join(twice)}")
    cache: dict[str, pa.Table] = {}
    moved: list[AlertTransition] = []
    for rule in spec.alerts:
        table = profile_table if rule.table == "profile" else drift_table
        if table not in cache:
            cache[table] = ws.tables.read(table) if ws.tables.exists(table) else pa.table({})
        metrics = cache[table]
        if metrics.num_columns == 0:
            continue  # nothing refreshed yet
        verdict = check_rule(rule, metrics, where=f" of monitor {spec.name!r}")
        if verdict is None:
            continue
        transition = _move(ws, spec.name, rule, verdict, now or datetime.now(UTC))
        if transition is not None:
            moved.append(transition)
    if moved:
        from lakeforge.monitoring._notify import deliver_emails, log_transitions

        log_transitions(spec, moved)
        if any("email" in rule.channels for rule in spec.alerts):
            deliver_emails(ws)
    return moved


# -- state ----------------------------------------------------------------------------------


def _next(state: str, breached: bool) -> State | None:
    if breached and state != "triggered":
        return "triggered"
    if not breached and state == "triggered":
        return "resolved"
    return None


def _move(
    ws: Workspace, monitor: str, rule: AlertRule, verdict: Verdict, now: datetime
) -> AlertTransition | None:
    """Move the rule's state if the verdict asks for it: compare-and-set, retried while
    another process moves it first."""
    engine = ws.state.connect_engine()
    _ensure(engine, monitor, rule.name, now)
    for _ in range(_ATTEMPTS):
        current = _state(engine, monitor, rule.name)
        assert current is not None
        target = _next(current.state, verdict.breached)
        if target is None:
            return None
        transition = AlertTransition(
            monitor=monitor,
            rule=rule.name,
            seq=current.seq + 1,
            previous=current.state,
            state=target,
            metric=rule.metric,
            column_name=rule.column_name,
            comparator=rule.comparator,
            threshold=rule.threshold,
            value=verdict.value,
            breaches=verdict.breaches,
            windows=str(rule.windows),
            window_start=verdict.window_start,
            window_end=verdict.window_end,
            event_id=None,
            at=now,
        )
        with engine.begin() as conn:
            recorded = _record(ws, conn, rule, current.seq, transition)
        if recorded is not None:
            return recorded
    raise LakeforgeError(
        f"alert {rule.name!r} of monitor {monitor!r}: its state kept changing under "
        f"{_ATTEMPTS} concurrent evaluations; refresh again"
    )


def _record(
    ws: Workspace, conn: Connection, rule: AlertRule, seq: int, transition: AlertTransition
) -> AlertTransition | None:
    """The compare-and-set, the history row and the event, in the caller's transaction."""
    t = transition
    swapped = conn.execute(
        update(monitor_alerts)
        .where(
            monitor_alerts.c.monitor == t.monitor,
            monitor_alerts.c.rule == t.rule,
            monitor_alerts.c.seq == seq,
        )
        .values(
            state=t.state,
            seq=t.seq,
            value=t.value,
            window_start=t.window_start,
            window_end=t.window_end,
            since=t.at,
            evaluated_at=t.at,
        )
    )
    if swapped.rowcount != 1:
        return None  # another evaluation moved it first
    history = conn.execute(
        insert(monitor_alert_history).values(
            monitor=t.monitor,
            rule=t.rule,
            seq=t.seq,
            previous=t.previous,
            state=t.state,
            metric=t.metric,
            column_name=t.column_name,
            comparator=t.comparator,
            threshold=t.threshold,
            value=t.value,
            breaches=t.breaches,
            windows=t.windows,
            window_start=t.window_start,
            window_end=t.window_end,
            at=t.at,
        )
    ).inserted_primary_key
    assert history is not None
    if "events" not in rule.channels:
        return t
    event_id = ws.events.emit(MONITOR_ALERT, t.monitor, _payload(rule, t), conn=conn)
    conn.execute(
        update(monitor_alert_history)
        .where(monitor_alert_history.c.id == history[0])
        .values(event_id=event_id)
    )
    return AlertTransition(**{**t.__dict__, "event_id": event_id})


def _payload(rule: AlertRule, t: AlertTransition) -> dict[str, Any]:
    """The ``monitor.alert`` event body (subject: the monitor's name)."""
    return {
        "monitor": t.monitor,
        "rule": t.rule,
        "state": t.state,
        "previous": t.previous,
        "transition": t.seq,
        "dedupe_key": t.dedupe_key,
        "metric": t.metric,
        "table": rule.table,
        "column_name": t.column_name,
        "slice": None if rule.slice is None else rule.slice.model_dump(),
        "drift_type": rule.drift_type,
        "comparator": t.comparator,
        "threshold": t.threshold,
        "value": t.value,
        "breaches": t.breaches,
        "window": str(rule.windows),
        "window_start": t.window_start,
        "window_end": t.window_end,
        "channels": list(rule.channels),
        "email": list(rule.email),
        "action": None if rule.action is None else rule.action.model_dump(),
    }


def _ensure(engine: Engine, monitor: str, rule: str, now: datetime) -> None:
    """The rule's state row, ``ok`` when new (a no-op when it exists)."""
    row = {
        "monitor": monitor,
        "rule": rule,
        "state": "ok",
        "seq": 0,
        "since": now,
        "evaluated_at": now,
    }
    with engine.begin() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.execute(postgresql.insert(monitor_alerts).values(**row).on_conflict_do_nothing())
        elif dialect == "sqlite":
            conn.execute(sqlite.insert(monitor_alerts).values(**row).on_conflict_do_nothing())
        else:
            raise LakeforgeError(f"monitor alerts support SQLite and PostgreSQL, not {dialect}")


def _state(engine: Engine, monitor: str, rule: str) -> AlertState | None:
    found = alert_states_from(engine, monitor, rule)
    return found[0] if found else None


# -- reading --------------------------------------------------------------------------------


def alert_states_from(
    engine: Engine, monitor: str | None = None, rule: str | None = None
) -> list[AlertState]:
    """Rules' current states, by monitor and rule."""
    c = monitor_alerts.c
    query = select(monitor_alerts).order_by(c.monitor, c.rule)
    if monitor is not None:
        query = query.where(c.monitor == monitor)
    if rule is not None:
        query = query.where(c.rule == rule)
    with engine.connect() as conn:
        return [
            AlertState(
                monitor=row.monitor,
                rule=row.rule,
                state=row.state,
                seq=int(row.seq),
                value=row.value,
                window_start=_utc(row.window_start),
                window_end=_utc(row.window_end),
                since=as_utc(row.since),
                evaluated_at=as_utc(row.evaluated_at),
            )
            for row in conn.execute(query)
        ]


def alert_states(ws: Workspace, name: str | None = None) -> list[AlertState]:
    """Every alert rule's current state (of monitor ``name``, or of all)."""
    return alert_states_from(ws.state.connect_engine(), name)


def alert_history(
    ws: Workspace, name: str | None = None, *, limit: int | None = None
) -> list[AlertTransition]:
    """Alert state moves, oldest first (of monitor ``name``, or of all; the newest ``limit``)."""
    c = monitor_alert_history.c
    query = select(monitor_alert_history).order_by(c.id.desc())
    if name is not None:
        query = query.where(c.monitor == name)
    if limit is not None:
        query = query.limit(limit)
    with ws.state.connect_engine().connect() as conn:
        rows = list(conn.execute(query))
    return [
        AlertTransition(
            monitor=row.monitor,
            rule=row.rule,
            seq=int(row.seq),
            previous=row.previous,
            state=row.state,
            metric=row.metric,
            column_name=row.column_name,
            comparator=row.comparator,
            threshold=float(row.threshold),
            value=row.value,
            breaches=int(row.breaches),
            windows=row.windows,
            window_start=_utc(row.window_start),
            window_end=_utc(row.window_end),
            event_id=row.event_id,
            at=as_utc(row.at),
        )
        for row in reversed(rows)
    ]


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)
