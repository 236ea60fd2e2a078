"""The scheduler: fires cron schedules and triggers of the jobs deployed to a target.

Restart-safe and single-firing:

- only the holder of the ``scheduler`` lease in the state store fires (a second
  scheduler started by mistake waits; a crashed one's lease expires);
- every firing has a key (``cron:<time>``, ``event:<id>``, ``table:<name>@v<n>``,
  ``files:<mtime>``) recorded in the same transaction as its (queued) run and as the
  trigger's cursor moving past it, so one scheduled time or event runs exactly once,
  whatever restarts happen: a kill -9 leaves either nothing (it fires again) or the
  firing with its run, which the next scheduler starts if it never did;
- trigger cursors live in the state store; cron times missed while no scheduler ran
  follow the schedule's ``catch_up`` policy: ``skip``, ``latest`` or ``all``.

Time comes from an injectable clock, so tests drive it without sleeping.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from lakeforge.jobs._errors import JobError
from lakeforge.jobs._runner import JobRunner
from lakeforge.project import (
    CronSchedule,
    FileArrivalTrigger,
    JobFinishedTrigger,
    JobSpec,
    ModelEventTrigger,
    MonitorAlertTrigger,
    TableUpdateTrigger,
)
from lakeforge.state import Lease, as_utc, deployed_resources, trigger_state, upsert

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

Clock = Callable[[], datetime]
Due = list[tuple[str, str, dict[str, Any]]]  # (trigger, fire key, trigger info)
LEASE = "scheduler"
_log = logging.getLogger(__name__)
GRACE = timedelta(seconds=60)  # a cron time older than this when seen was missed


@dataclass(frozen=True)
class Firing:
    """A run the scheduler started; ``run_id`` None: its key had already fired."""

    job: str
    trigger: str
    fire_key: str
    run_id: int | None


class Scheduler:
    """Fires the deployed jobs of one target; call :meth:`tick` or :meth:`serve`."""

    def __init__(
        self,
        ws: Workspace,
        *,
        clock: Clock | None = None,
        lease_s: float = 30.0,
        background: bool = True,
        jobs: list[str] | None = None,
    ) -> None:
        self.ws = ws
        self.runner = JobRunner(ws)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lease = Lease(ws.state, LEASE, duration=timedelta(seconds=lease_s), clock=self._now)
        self.background = background
        self.only = jobs
        self._threads: list[threading.Thread] = []

    def _now(self) -> datetime:
        return as_utc(self.clock())

    # -- leadership -----------------------------------------------------------------------

    def acquire(self) -> bool:
        """Take or renew the scheduler lease; False while another scheduler holds it."""
        return self._lease.acquire()

    def release(self) -> None:
        """Give the lease up, so the next scheduler need not wait for it to expire."""
        self._lease.release()

    # -- one pass -------------------------------------------------------------------------

    def jobs(self) -> dict[str, JobSpec]:
        """The jobs this scheduler fires, with their deployed specs: those deployed to the
        target (or ``jobs=``; in development mode an undeployed one's working copy)."""
        if self.only is not None:
            names = self.only
        else:
            with self.ws.state.connect_engine().connect() as conn:
                names = list(
                    conn.execute(
                        select(deployed_resources.c.name).where(deployed_resources.c.kind == "job")
                    ).scalars()
                )
        found = {}
        for name in names:
            try:
                found[name] = self.runner.spec(name)
            except JobError as exc:  # not runnable on this target: said once per pass
                _log.warning("scheduler: job %s is not fired: %s", name, exc.message)
        return found

    def tick(self) -> list[Firing]:
        """Check every schedule and trigger once; start the runs that are due.

        Runs a dead scheduler had recorded but not started are started too (they are not
        among the returned firings).
        """
        if not self.acquire():
            return []
        self.runner.recover_orphans()
        for orphan in self.runner.adopt_orphans():
            self._start(orphan)
        firings: list[Firing] = []
        engine = self.ws.state.connect_engine()
        for name, spec in self.jobs().items():
            paused = self.runner.paused(name)
            for state_key, due, cursor in self._due(name, spec):
                recorded: list[tuple[str, str, int | None]] = []
                with engine.begin() as conn:  # the firings and the cursor past them, at once
                    for trigger, key, info in [] if paused else due:  # paused: no pile-up
                        recorded.append(
                            (
                                trigger,
                                key,
                                self.runner.record(
                                    conn, name, trigger=trigger, trigger_info=info, fire_key=key
                                ),
                            )
                        )
                    upsert(
                        conn,
                        trigger_state,
                        {"job": name, "trigger": state_key},
                        {"cursor": cursor, "updated_at": self._now()},
                    )
                firings += [
                    Firing(name, trigger, key, None if run_id is None else self._start(run_id))
                    for trigger, key, run_id in recorded
                ]
        return firings

    def serve(self, *, interval_s: float = 1.0, stop: threading.Event | None = None) -> None:
        """Tick every ``interval_s`` until ``stop`` is set; then wait for started runs."""
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(interval_s)
        finally:
            self.release()
            self.wait()

    def wait(self) -> None:
        """Wait for the runs this scheduler started in the background."""
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _start(self, run_id: int) -> int:
        """Start a recorded run: in a thread, or here and now (``background=False``)."""
        if not self.background:
            return self.runner.start(run_id).id
        thread = threading.Thread(
            target=self.runner.start, args=(run_id,), name=f"lakeforge-run-{run_id}", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        return run_id

    # -- triggers -------------------------------------------------------------------------

    def _due(self, job: str, spec: JobSpec) -> Iterator[tuple[str, Due, str]]:
        """Per schedule or trigger: its state key, what is due, and its next cursor."""
        if spec.schedule is not None:
            yield ("cron", *self._cron(job, spec.schedule))
        for index, trigger in enumerate(spec.triggers):
            state_key = f"{index}:{trigger.type}"
            if isinstance(trigger, TableUpdateTrigger):
                yield (state_key, *self._tables(job, state_key, trigger))
            elif isinstance(trigger, FileArrivalTrigger):
                yield (state_key, *self._files(job, state_key, trigger))
            else:
                yield (state_key, *self._events(job, state_key, trigger))

    def _cursor(self, job: str, trigger: str) -> str | None:
        with self.ws.state.connect_engine().connect() as conn:
            value = conn.execute(
                select(trigger_state.c.cursor).where(
                    trigger_state.c.job == job, trigger_state.c.trigger == trigger
                )
            ).scalar()
        return None if value is None else str(value)

    def _cron(self, job: str, schedule: CronSchedule) -> tuple[Due, str]:
        from croniter import croniter

        now = self._now()
        cursor = self._cursor(job, "cron")
        if cursor is None:
            return [], now.isoformat()  # first sight of this schedule: nothing is due yet
        zone = ZoneInfo(schedule.timezone)
        times = croniter(schedule.cron, datetime.fromisoformat(cursor).astimezone(zone))
        due: list[datetime] = []
        while len(due) < 10_000:
            at = times.get_next(datetime).astimezone(UTC)
            if at > now:
                break
            due.append(at)
        if schedule.catch_up == "skip":
            due = [at for at in due if now - at <= GRACE]
        elif schedule.catch_up == "latest":
            due = due[-1:]
        fires = [
            ("cron", f"cron:{at.isoformat()}", {"kind": "cron", "scheduled_for": at.isoformat()})
            for at in due
        ]
        return fires, now.isoformat()

    def _tables(self, job: str, key: str, trigger: TableUpdateTrigger) -> tuple[Due, str]:
        cursors = json.loads(self._cursor(job, key) or "null")
        current = {}
        for table in trigger.tables:
            name = str(self.ws.tables.name(table))
            exists = self.ws.tables.exists(name)
            current[name] = self.ws.tables.delta(name).version() if exists else -1
        fires: Due = []
        if cursors is not None:
            fires = [
                (
                    f"table_update:{name}",
                    f"table:{name}@v{version}",
                    {"kind": "table_update", "table": name, "version": version},
                )
                for name, version in current.items()
                if version > cursors.get(name, -1)
            ]
        return fires, json.dumps(current)

    def _files(self, job: str, key: str, trigger: FileArrivalTrigger) -> tuple[Due, str]:
        folder = (self.ws.project.directory / trigger.path).resolve()
        files = (
            [
                p
                for p in folder.rglob("*")
                if p.is_file() and fnmatch.fnmatch(p.name, trigger.pattern)
            ]
            if folder.is_dir()
            else []
        )
        seen = self._cursor(job, key)
        newest = max((p.stat().st_mtime_ns for p in files), default=0)
        cursor = str(max(newest, int(seen or 0)))
        if seen is None:
            return [], cursor
        new = sorted(str(p) for p in files if p.stat().st_mtime_ns > int(seen))
        if not new:
            return [], cursor
        info = {"kind": "file_arrival", "files": new[:100], "count": len(new)}
        return [(f"file_arrival:{trigger.path}", f"files:{newest}", info)], cursor

    def _events(
        self,
        job: str,
        key: str,
        trigger: ModelEventTrigger | JobFinishedTrigger | MonitorAlertTrigger,
    ) -> tuple[Due, str]:
        outbox = self.ws.events
        seen = self._cursor(job, key)
        if seen is None:
            return [], str(outbox.last_id())  # events before the trigger existed do not fire
        last, fires = int(seen), []
        while batch := outbox.list(after_id=last, limit=500):
            for event in batch:
                if _matches(trigger, event.type, event.subject, event.payload):
                    fires.append(
                        (
                            f"{trigger.type}:{event.type}",
                            f"event:{event.id}",
                            {"kind": trigger.type, "event": event.to_dict()},
                        )
                    )
                last = event.id
        return fires, str(last)


def _matches(
    trigger: ModelEventTrigger | JobFinishedTrigger | MonitorAlertTrigger,
    type_: str,
    subject: str,
    payload: dict[str, Any],
) -> bool:
    if isinstance(trigger, ModelEventTrigger):
        if type_ not in trigger.events or not any(
            fnmatch.fnmatch(subject, m) for m in trigger.models
        ):
            return False
        return (
            trigger.alias is None or type_ != "alias.moved" or payload.get("alias") == trigger.alias
        )
    if isinstance(trigger, JobFinishedTrigger):
        return (
            type_ == "job.finished"
            and subject in trigger.jobs
            and payload.get("status") in trigger.status
        )
    return (
        type_ == "monitor.alert"
        and payload.get("state", "triggered") == "triggered"  # resolving does not retrain
        and any(fnmatch.fnmatch(subject, m) for m in trigger.monitors)
    )
