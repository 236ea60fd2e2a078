"""Which monitors a target has, and the spec each one refreshes with.

A monitor comes from one of three places:

- ``create_monitor`` (the SDK): kept in the target's ``<catalog>.system.monitors`` Delta
  table, one row per monitor with its spec as JSON. A Delta table rather than the state
  store: it lives beside the data on every root (local or object store), needs no
  state-store migration, and keeps every version of a spec (time travel).
- ``lakeforge deploy``: the monitors of ``lakeforge.yaml`` are recorded in the state
  store's ``deployed_resources`` (kind ``monitor``), and a deployed monitor refreshes with
  the spec deployed, as a deployed job runs its deployed spec;
- the working copy's ``lakeforge.yaml``, on a development-mode target only: a
  production-mode target refreshes deployed (or SDK-created) monitors only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
from sqlalchemy import select

from lakeforge._identity import current_user
from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import SYSTEM_SCHEMA, TableName
from lakeforge.monitoring._tables import sql_text
from lakeforge.project import MonitorSpec
from lakeforge.state import deployed_resources

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

REGISTRY_TABLE = "monitors"
_SCHEMA = pa.schema(
    [
        pa.field("name", pa.string(), nullable=False),
        pa.field("spec", pa.string(), nullable=False),
        pa.field("created_by", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


class MonitorNotFoundError(LakeforgeError):
    """A monitor name the target does not know."""


def registry_table(ws: Workspace) -> TableName:
    return TableName(ws.target.catalog, SYSTEM_SCHEMA, REGISTRY_TABLE)


def _registered(ws: Workspace) -> dict[str, MonitorSpec]:
    table = registry_table(ws)
    if not ws.tables.exists(table):
        return {}
    rows = ws.tables.read(table, columns=["name", "spec"]).to_pylist()
    return {row["name"]: MonitorSpec.model_validate_json(row["spec"]) for row in rows}


def _deployed(ws: Workspace) -> dict[str, MonitorSpec]:
    with ws.state.connect_engine().connect() as conn:
        rows = conn.execute(
            select(deployed_resources.c.name, deployed_resources.c.spec).where(
                deployed_resources.c.kind == "monitor"
            )
        ).all()
    return {row.name: MonitorSpec.model_validate_json(row.spec) for row in rows if row.spec}


def _sources(
    ws: Workspace,
) -> tuple[dict[str, MonitorSpec], dict[str, MonitorSpec], dict[str, MonitorSpec]]:
    return _registered(ws), _deployed(ws), ws.project.config.all_monitors()


def list_monitors(ws: Workspace) -> list[MonitorSpec]:
    """Every monitor the target refreshes, by name, with the spec it refreshes with."""
    registered, deployed, declared = _sources(ws)
    found = {**deployed, **registered}
    if ws.target.development:
        found = {**{n: s for n, s in declared.items() if n not in deployed}, **found}
    return [found[name] for name in sorted(found)]


def monitor_spec(ws: Workspace, name: str) -> MonitorSpec:
    """The spec monitor ``name`` refreshes with on this target (see the module doc)."""
    registered, deployed, declared = _sources(ws)
    if name in registered:
        return registered[name]
    if name in deployed:
        return deployed[name]
    target = ws.target.name
    if name in declared:
        if ws.target.development:
            return declared[name]
        raise MonitorNotFoundError(
            f"monitor {name!r} is not deployed to target {target} (production mode "
            "refreshes deployed monitors only)",
            hint=f"deploy it first: `lakeforge deploy -t {target}`",
        )
    known = sorted({*registered, *deployed, *(declared if ws.target.development else {})})
    raise MonitorNotFoundError(
        f"unknown monitor {name!r} on target {target} (monitors: {', '.join(known) or 'none'})",
        hint="declare it under monitors: in lakeforge.yaml, or create_monitor(ws, spec)",
    )


def create_monitor(ws: Workspace, spec: MonitorSpec, *, replace: bool = False) -> MonitorSpec:
    """Register a monitor on this target through the SDK (no deploy needed).

    Its name may not be one ``lakeforge.yaml`` declares or a deploy recorded; an existing
    SDK monitor of that name is refused unless ``replace``.
    """
    if not spec.name:
        raise LakeforgeError("create_monitor: the spec needs a name (MonitorSpec(name=...))")
    registered, deployed, declared = _sources(ws)
    if spec.name in declared or spec.name in deployed:
        raise LakeforgeError(
            f"monitor {spec.name!r} is declared in lakeforge.yaml (or deployed); change it "
            "there, or give the SDK monitor another name"
        )
    if spec.name in registered and not replace:
        raise LakeforgeError(
            f"monitor {spec.name!r} already exists on target {ws.target.name}",
            hint="pass replace=True to change its spec",
        )
    source = TableName.parse(spec.table, default_catalog=ws.target.catalog)
    if not ws.tables.exists(source):
        raise LakeforgeError(f"monitor {spec.name!r}: table {source} does not exist")
    row = pa.Table.from_pylist(
        [
            {
                "name": spec.name,
                "spec": spec.model_dump_json(),
                "created_by": current_user(),
                "created_at": datetime.now(UTC),
            }
        ],
        _SCHEMA,
    )
    table = registry_table(ws)
    exists = ws.tables.exists(table)
    ws.tables.write(
        table,
        row,
        mode="overwrite" if exists else "append",
        replace_where=f"name = {sql_text(spec.name)}" if exists else None,
        quality_log=False,
    )
    return spec


def delete_monitor(ws: Workspace, name: str) -> None:
    """Forget an SDK monitor; its metric tables are kept."""
    if name not in _registered(ws):
        raise MonitorNotFoundError(f"no SDK monitor {name!r} on target {ws.target.name}")
    ws.tables.delete(registry_table(ws), f"name = {sql_text(name)}")
