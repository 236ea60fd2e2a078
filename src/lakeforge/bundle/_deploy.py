"""``lakeforge deploy``: make a target match the tables, jobs, endpoints and monitors declared.

Like Databricks Asset Bundles' ``bundle deploy``: :func:`plan` compares the declared
resources with what the target has (its Delta tables, and the ``deployed_resources``
rows of its state store), :func:`apply` carries the changes out. Deploy creates missing
tables but never alters or drops an existing one: a table whose columns differ from the
declared ones is reported as drift. Endpoints are recorded (``lakeforge serve`` runs
them) and their inference tables created; a served model the target's registry does not
have yet is reported, not refused: with deploy-code, models arrive after the code.
Monitors (and those declared on endpoints) are recorded: a target's monitors refresh
with the spec deployed (``lakeforge.monitoring`` reads the records).

:func:`deploy` also snapshots the project's code at its commit into the target (see
``_snapshot``) after checking the jobs' references against it (``_validate``): the
target's jobs run that snapshot, never the working copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
from sqlalchemy import Connection, delete, select

from lakeforge._identity import current_user
from lakeforge.bundle._errors import DeployError
from lakeforge.bundle._snapshot import collect, current, describe, record, stage
from lakeforge.bundle._validate import check_references
from lakeforge.errors import LakeforgeError, SchemaMismatchError, TableNameError
from lakeforge.lakehouse import TableName, parse_columns
from lakeforge.project import EndpointSpec, JobSpec, MonitorSpec, TableSpec, VectorIndexSpec
from lakeforge.state import deployed_resources, job_settings, upsert

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

Action = Literal["create", "update", "delete", "forget"]
Progress = Callable[[str], None]  # told each step: snapshotting, validating, each resource
Kind = Literal["job", "table", "endpoint", "monitor", "vector_index"]


@dataclass(frozen=True)
class Change:
    """One change to a target.

    ``forget`` is a table no longer declared: only its deploy record is removed, the
    table and its data are kept. ``spec`` is the canonical JSON of the declared spec
    (None for delete and forget).
    """

    action: Action
    kind: Kind
    name: str  # job name, or catalog.schema.table
    deployed_name: str
    spec: str | None = None
    fields: tuple[str, ...] = ()  # update: the top-level fields that changed
    paused: bool | None = None  # the paused state deploy sets on the job, if it sets one

    @property
    def spec_hash(self) -> str | None:
        return None if self.spec is None else hashlib.sha256(self.spec.encode()).hexdigest()


@dataclass(frozen=True)
class Drift:
    """An existing table whose columns differ from the declared ones (deploy leaves it)."""

    table: str
    missing: tuple[str, ...]  # declared, not in the table
    undeclared: tuple[str, ...]  # in the table, not declared
    changed: tuple[tuple[str, str, str], ...]  # (column, type in the table, declared type)

    def describe(self) -> str:
        parts = [f"column {c} missing" for c in self.missing]
        parts += [f"column {c} not declared" for c in self.undeclared]
        parts += [f"column {c} is {has} (declared {want})" for c, has, want in self.changed]
        return ", ".join(parts)


@dataclass(frozen=True)
class CodeChange:
    """A new code snapshot: what the target's jobs run once the plan is applied."""

    path: str  # the snapshot folder under <root>/deployments
    commit: str | None
    dirty: bool
    content_hash: str
    previous: str | None = None  # the code deployed before (its label); None: none yet

    @property
    def label(self) -> str:
        return describe(self.commit, self.dirty)


@dataclass(frozen=True)
class Plan:
    """What deploying the project to ``target`` changes; ``applied`` once carried out."""

    target: str
    development: bool
    changes: tuple[Change, ...]
    drift: tuple[Drift, ...] = ()
    unresolved: tuple[str, ...] = ()  # endpoint entities whose model is not in the target
    applied: bool = False
    unapproved: tuple[str, ...] = ()  # alias moves made in MLflow directly, now recorded
    code: CodeChange | None = None  # None: the code deployed already is this code

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or self.code is not None


def canonical_json(
    spec: JobSpec | TableSpec | EndpointSpec | MonitorSpec | VectorIndexSpec,
) -> str:
    """The spec as canonical JSON (sorted keys, no spaces): what the spec hash covers."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def spec_hash(spec: JobSpec | TableSpec | EndpointSpec | MonitorSpec) -> str:
    """sha256 of the spec's canonical JSON."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def deployed_name(ws: Workspace, job: str) -> str:
    """The job's name in the target: ``[dev <user>] <job>`` in development mode."""
    return f"[dev {current_user()}] {job}" if ws.target.development else job


def deployed_jobs(ws: Workspace) -> dict[str, str]:
    """Jobs deployed to the target (job name -> deployed name): what the scheduler runs."""
    with ws.state.connect_engine().connect() as conn:
        rows = conn.execute(
            select(deployed_resources.c.name, deployed_resources.c.deployed_name)
            .where(deployed_resources.c.kind == "job")
            .order_by(deployed_resources.c.name)
        ).all()
    return {row.name: row.deployed_name for row in rows}


# -- planning -------------------------------------------------------------------------


def plan(ws: Workspace) -> Plan:
    """The changes that make the target match the project; nothing is applied."""
    config = ws.project.config
    with ws.state.connect_engine().connect() as conn:
        rows = conn.execute(select(deployed_resources)).all()
    recorded = {(row.kind, row.name): row for row in rows}
    changes: list[Change] = []
    drift: list[Drift] = []

    declared_tables: set[str] = set()
    for key, table_spec in config.tables.items():
        table = _table_name(ws, key)
        declared_tables.add(str(table))
        declared = _declared_schema(key, table_spec)
        if not ws.tables.exists(table):
            changes.append(
                Change("create", "table", str(table), str(table), canonical_json(table_spec))
            )
            continue
        found = _compare_columns(str(table), declared, ws.tables.delta(table).schema())
        if found is not None:
            drift.append(found)

    jobs = config.all_jobs()
    for job, job_spec in jobs.items():
        name = deployed_name(ws, job)
        spec = canonical_json(job_spec)
        row = recorded.get(("job", job))
        if row is None:
            schedule = job_spec.schedule
            start_paused = schedule is not None and (ws.target.development or schedule.paused)
            changes.append(Change("create", "job", job, name, spec, paused=start_paused))
            continue
        if row.spec_hash == spec_hash(job_spec) and row.deployed_name == name:
            continue
        old = json.loads(row.spec)
        fields = _changed_fields(old, json.loads(spec))
        if row.deployed_name != name:
            fields = ("name", *fields)
        # A schedule added in development mode starts paused, like a new scheduled job.
        adds_schedule = old.get("schedule") is None and job_spec.schedule is not None
        pause = True if ws.target.development and adds_schedule else None
        changes.append(Change("update", "job", job, name, spec, fields=fields, paused=pause))

    unresolved: list[str] = []
    for endpoint, endpoint_spec in config.endpoints.items():
        spec = canonical_json(endpoint_spec)
        row = recorded.get(("endpoint", endpoint))
        if row is None:
            changes.append(Change("create", "endpoint", endpoint, endpoint, spec))
        elif row.spec_hash != spec_hash(endpoint_spec):
            fields = _changed_fields(json.loads(row.spec), json.loads(spec))
            changes.append(Change("update", "endpoint", endpoint, endpoint, spec, fields=fields))
        unresolved += _unresolved_entities(ws, endpoint, endpoint_spec)

    monitors = config.all_monitors()
    for monitor, monitor_spec in monitors.items():
        spec = canonical_json(monitor_spec)
        row = recorded.get(("monitor", monitor))
        if row is None:
            changes.append(Change("create", "monitor", monitor, monitor, spec))
        elif row.spec_hash != spec_hash(monitor_spec):
            fields = _changed_fields(json.loads(row.spec), json.loads(spec))
            changes.append(Change("update", "monitor", monitor, monitor, spec, fields=fields))

    if config.vector_indexes:  # created empty, so serving finds them before the first sync
        for info in ws.vectors.list():
            if info.latest_version is None:
                index_spec = config.vector_indexes[info.name]
                changes.append(
                    Change(
                        "create", "vector_index", info.name, info.name, canonical_json(index_spec)
                    )
                )

    by_kind: dict[str, Any] = {
        "job": jobs,
        "endpoint": config.endpoints,
        "monitor": monitors,
    }
    for (kind, name), row in sorted(recorded.items(), key=lambda item: item[0]):
        if kind in by_kind and name not in by_kind[kind]:
            changes.append(Change("delete", kind, name, row.deployed_name))
        elif kind == "table" and name not in declared_tables:
            changes.append(Change("forget", "table", name, row.deployed_name))
    unapproved = tuple(
        f"{e.model}@{e.alias}: "
        f"{'none' if e.from_version is None else f'v{e.from_version}'} -> "
        f"{'removed' if e.to_version is None else f'v{e.to_version}'}"
        for e in ws.models.check_drift()
    )
    return Plan(
        ws.target.name,
        ws.target.development,
        tuple(changes),
        tuple(drift),
        tuple(unresolved),
        unapproved=unapproved,
    )


def _unresolved_entities(ws: Workspace, endpoint: str, spec: EndpointSpec) -> list[str]:
    """The endpoint's entities whose model version or alias the target does not have."""
    found = []
    for entity in [*spec.served_entities, *([spec.shadow] if spec.shadow else [])]:
        ref = f"@{entity.alias}" if entity.alias else f"/{entity.version}"
        try:
            ws.models.resolve(entity.model + ref)
        except LakeforgeError as exc:
            found.append(f"endpoint {endpoint}, entity {entity.entity_name}: {exc.message}")
    return found


def _table_name(ws: Workspace, key: str) -> TableName:
    if key.count(".") != 1:
        raise DeployError(
            f"tables: {key!r} must be schema.table (the catalog is the target's, "
            f"{ws.target.catalog!r})"
        )
    try:
        return TableName.parse(key, default_catalog=ws.target.catalog)
    except TableNameError as exc:
        raise DeployError(f"tables: {exc.message}") from None


def _declared_schema(key: str, spec: TableSpec) -> pa.Schema:
    """The declared columns as Arrow, checked against the keys, partitions and comments."""
    try:
        schema = parse_columns(spec.columns)
    except SchemaMismatchError as exc:
        raise DeployError(f"tables.{key}: {exc.message}") from None
    for field, names in (
        ("partition_by", spec.partition_by),
        ("primary_key", spec.primary_key),
        ("column_comments", list(spec.column_comments)),
    ):
        unknown = [n for n in names if schema.get_field_index(n) < 0]
        if unknown:
            raise DeployError(
                f"tables.{key}.{field}: unknown column(s) {', '.join(unknown)} "
                f"(columns: {', '.join(schema.names)})"
            )
    return schema


def _compare_columns(table: str, declared: pa.Schema, actual: Any) -> Drift | None:
    """Differences between declared columns and a Delta schema, by Delta type."""
    from deltalake import Schema

    want = {f.name: f.type for f in Schema.from_arrow(declared).fields}
    has = {f.name: f.type for f in actual.fields}
    found = Drift(
        table,
        missing=tuple(c for c in want if c not in has),
        undeclared=tuple(c for c in has if c not in want),
        changed=tuple(
            (c, _type_name(has[c]), _type_name(want[c]))
            for c in want
            if c in has and has[c] != want[c]
        ),
    )
    return found if found.missing or found.undeclared or found.changed else None


def _type_name(delta_type: Any) -> str:
    """A Delta type as SQL-like text: ``long``, ``array<string>``, ``struct<a:int>``."""
    kind = getattr(delta_type, "type", None)
    if kind == "array":
        return f"array<{_type_name(delta_type.element_type)}>"
    if kind == "map":
        return f"map<{_type_name(delta_type.key_type)},{_type_name(delta_type.value_type)}>"
    if kind == "struct":
        inner = ",".join(f"{f.name}:{_type_name(f.type)}" for f in delta_type.fields)
        return f"struct<{inner}>"
    return str(kind) if kind is not None else str(delta_type)


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    """Top-level spec fields whose values differ, in declaration order."""
    order = [*JobSpec.model_fields, *sorted(set(old) | set(new))]
    seen: list[str] = []
    for name in order:
        if name not in seen and old.get(name) != new.get(name):
            seen.append(name)
    return tuple(seen)


# -- applying -------------------------------------------------------------------------


def apply(ws: Workspace, plan: Plan, *, progress: Progress | None = None) -> Plan:
    """Carry out ``plan``: tables first (created only if missing), then the records and the
    code snapshot they run, in one state-store transaction; returns it applied."""
    if plan.target != ws.target.name:
        raise DeployError(
            f"this plan is for target {plan.target!r}, not {ws.target.name!r}",
            hint=f"plan again with -t {ws.target.name}",
        )
    step = progress or _silent
    for change in plan.changes:
        step(f"{change.action} {change.kind} {change.name}")
        if change.kind == "table" and change.action == "create":
            assert change.spec is not None
            _create_table(ws, change.name, TableSpec.model_validate_json(change.spec))
        if change.kind == "endpoint" and change.action in ("create", "update"):
            assert change.spec is not None
            table = EndpointSpec.model_validate_json(change.spec).inference_table
            if table is not None:
                from lakeforge.serving import create_inference_table as create_table

                create_table(ws, table.table)
        if change.kind == "vector_index" and change.action == "create":
            from lakeforge.vectors import ensure_index

            ensure_index(ws, change.name)
    with ws.state.connect_engine().begin() as conn:
        for change in plan.changes:
            if change.action in ("create", "update"):
                _upsert_record(conn, change)
            else:
                conn.execute(
                    delete(deployed_resources).where(
                        deployed_resources.c.kind == change.kind,
                        deployed_resources.c.name == change.name,
                    )
                )
            if change.kind == "job" and change.action == "delete":
                conn.execute(delete(job_settings).where(job_settings.c.job == change.name))
            if change.paused is not None:
                _set_paused(conn, change.name, change.paused)
        if plan.code is not None:
            step(f"recording code {plan.code.label}")
            code = plan.code
            record(conn, Path(code.path), code.commit, code.dirty, code.content_hash)
    return replace(plan, applied=True)


def deploy(
    ws: Workspace,
    *,
    dry_run: bool = False,
    allow_dirty: bool = False,
    progress: Progress | None = None,
) -> Plan:
    """Snapshot the code, check the references the jobs make, plan the target's changes and
    (unless ``dry_run``) apply them. A refused snapshot or check changes nothing.

    A dirty tree (or no git commit) is refused on a production-mode target unless
    ``allow_dirty``; the snapshot then holds the working tree and is recorded dirty.
    """
    step = progress or _silent
    planned = plan(ws)
    step("snapshotting the code")
    source = collect(ws, allow_dirty=allow_dirty)
    resources = {
        "project": ws.project.name,
        **{
            kind: {name: spec.model_dump(mode="json") for name, spec in specs.items()}
            for kind, specs in (
                ("jobs", ws.project.config.all_jobs()),
                ("tables", ws.project.config.tables),
                ("endpoints", ws.project.config.endpoints),
                ("llm_endpoints", ws.project.config.llm_endpoints),
                ("monitors", ws.project.config.all_monitors()),
                ("vector_indexes", ws.project.config.vector_indexes),
            )
        },
    }
    what = (
        "the working tree"
        if source.commit is None or source.dirty
        else f"the files git tracks at {source.commit[:12]}"
    )
    with stage(ws, source, resources) as staged:
        step(f"validating the jobs' references in {what}")
        problems = check_references(ws, staged.code_dir, what)
        if problems:
            raise DeployError(
                f"deploy to target {ws.target.name} refused, nothing was changed:\n  "
                + "\n  ".join(problems),
                hint="fix them and deploy again (the snapshot holds the files git tracks: "
                "`git add` new modules)",
            )
        path = staged.publish()
    deployed = current(ws)
    if deployed is None or deployed.path != path:
        code = CodeChange(
            str(path),
            source.commit,
            source.dirty,
            staged.content_hash,
            previous=None if deployed is None else deployed.label,
        )
        planned = replace(planned, code=code)
    return planned if dry_run else apply(ws, planned, progress=step)


def _silent(_step: str) -> None:
    return None


def _create_table(ws: Workspace, name: str, spec: TableSpec) -> None:
    ws.tables.create(
        name,
        _declared_schema(name, spec),
        partition_by=spec.partition_by or None,
        primary_keys=spec.primary_key or None,
        comment=spec.comment,
        column_comments=spec.column_comments or None,
        if_not_exists=True,
    )


def _upsert_record(conn: Connection, change: Change) -> None:
    values = {
        "deployed_name": change.deployed_name,
        "spec_hash": change.spec_hash,
        "spec": change.spec,
        "deployed_by": current_user(),
        "deployed_at": datetime.now(UTC),
    }
    upsert(conn, deployed_resources, {"kind": change.kind, "name": change.name}, values)


def _set_paused(conn: Connection, job: str, paused: bool) -> None:
    upsert(conn, job_settings, {"job": job}, {"paused": paused, "updated_at": datetime.now(UTC)})


# -- rendering ------------------------------------------------------------------------

DRIFT_NOTE = "  deploy does not alter existing tables: change their columns yourself"


def render(plan: Plan, *, with_summary: bool = True) -> list[str]:
    """The plan as diff lines (``+`` create, ``~`` update, ``-`` delete, ``!`` drift)."""
    lines: list[str] = []
    if plan.code is not None:
        if plan.code.previous is None:
            lines.append(f"+ code {plan.code.label} (snapshot {Path(plan.code.path).name})")
        else:
            lines.append(f"~ code {plan.code.previous} -> {plan.code.label}")
    for change in plan.changes:
        subject = f"{change.kind} {change.name}"
        if change.action == "create":
            line = f"+ {subject}"
            if change.deployed_name != change.name:
                line += f' as "{change.deployed_name}"'
        elif change.action == "update":
            line = f"~ {subject} ({', '.join(change.fields)})"
        elif change.action == "delete":
            line = f"- {subject}"
        else:
            line = f"- {subject} (no longer declared; the table and its data are kept)"
        if change.paused:
            line += ", paused"
        lines.append(line)
    for found in plan.drift:
        lines.append(f"! drift table {found.table}: {found.describe()}")
    for problem in plan.unresolved:
        lines.append(f"! {problem} (`lakeforge serve` refuses it until it is registered)")
    for move in plan.unapproved:
        lines.append(
            f"! unapproved alias move {move} (made in MLflow outside Lakeforge; recorded in "
            "`models history`)"
        )
    if plan.drift:
        lines.append(DRIFT_NOTE)
    if with_summary:
        lines.append(summary(plan))
    return lines


def summary(plan: Plan) -> str:
    """``applied N change(s)``, ``no changes``, or what a dry run left unapplied."""
    count = len(plan.changes) + (plan.code is not None)
    if not count:
        return "no changes"
    if plan.applied:
        return f"applied {count} change(s) to target {plan.target}"
    return f"dry run: {count} change(s) not applied"
