"""Publishing feature tables to the target's online store: a full snapshot, or only what
the Delta change data feed says changed since the last publish.

The online store keeps the latest row per entity key (a late older row never replaces
a newer one). A publish reads up to the Delta version current when it starts and
records that version only after writing, so writes that land meanwhile are picked up
by the next publish: none is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from lakeforge.features._tables import FeatureTableInfo, FeatureTables
from lakeforge.features.online import OnlineStore, open_online_store
from lakeforge.lakehouse import TableName
from lakeforge.lakehouse._sql import query_dataset
from lakeforge.state import feature_publishes, upsert

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

Mode = Literal["auto", "snapshot", "incremental"]
_CDF_COLUMNS = ("_change_type", "_commit_version", "_commit_timestamp")
_BATCH_ROWS = 100_000


@dataclass(frozen=True)
class PublishResult:
    """What one publish did."""

    table: str
    mode: Literal["snapshot", "incremental", "unchanged"]
    from_version: int | None
    to_version: int
    rows_written: int
    keys_deleted: int


def online_store(ws: Workspace) -> OnlineStore:
    """The target's online store (``targets.<t>.online_store``; SQLite under the root by default)."""
    return open_online_store(
        ws.target.online_store, namespace=f"{ws.project.name}.{ws.target.name}"
    )


def publish_table(
    ws: Workspace, name: str | TableName, *, mode: Mode = "auto", store: OnlineStore | None = None
) -> PublishResult:
    """Copy a feature table to the online store.

    ``auto`` publishes incrementally from the change data feed when the table was
    published before and its feed covers the versions since, else a snapshot.
    """
    info = FeatureTables(ws.tables).describe(name)
    table = str(info.name)
    own = store is None
    store = store or online_store(ws)
    try:
        target_version = info.version
        last = _last_published(ws, table)
        if last == target_version and mode != "snapshot":
            return PublishResult(table, "unchanged", last, target_version, 0, 0)
        if mode == "snapshot" or last is None or last > target_version:
            written = _snapshot(ws, info, store, target_version)
            result = PublishResult(table, "snapshot", last, target_version, written, 0)
        else:
            written, deleted = _incremental(ws, info, store, last, target_version)
            result = PublishResult(table, "incremental", last, target_version, written, deleted)
        _record(ws, table, target_version)
        return result
    finally:
        if own:
            store.close()


def _write(store: OnlineStore, info: FeatureTableInfo, rows: pa.Table) -> int:
    if rows.num_rows == 0:
        return 0
    store.write(
        str(info.name),
        rows.select([*info.lookup_keys, *_ts(info), *info.features]),
        keys=info.lookup_keys,
        timestamp=info.timestamp_key,
        features=list(info.features),
    )
    return int(rows.num_rows)


def _ts(info: FeatureTableInfo) -> list[str]:
    return [info.timestamp_key] if info.timestamp_key else []


def _snapshot(ws: Workspace, info: FeatureTableInfo, store: OnlineStore, version: int) -> int:
    table = str(info.name)
    if table in store.tables():
        store.drop(table)  # rows deleted from the table must not survive a snapshot
    dataset = ws.tables.delta(info.name, version=version).to_pyarrow_dataset()
    written = 0
    for batch in dataset.to_batches(batch_size=_BATCH_ROWS):
        written += _write(store, info, pa.Table.from_batches([batch]))
    return written


def _incremental(
    ws: Workspace, info: FeatureTableInfo, store: OnlineStore, last: int, version: int
) -> tuple[int, int]:
    changes = _plain(
        ws.tables.changes(info.name, starting_version=last + 1, ending_version=version)
    )
    kinds = changes.column("_change_type")
    upserts = changes.filter(pc.is_in(kinds, pa.array(["insert", "update_postimage"])))
    deletes = changes.filter(pc.equal(kinds, "delete"))
    written = _write(store, info, upserts.drop_columns(list(_CDF_COLUMNS)))
    deleted = 0
    if deletes.num_rows:
        keys = deletes.select(info.lookup_keys).group_by(info.lookup_keys).aggregate([])
        deleted = store.delete(str(info.name), keys, keys=info.lookup_keys)
        written += _write(store, info, _latest_rows(ws, info, keys, version))
    return written, deleted


def _plain(table: pa.Table) -> pa.Table:
    """The change feed comes with view types (string_view); the online stores take plain ones."""
    fields = [
        f.with_type(pa.string())
        if pa.types.is_string_view(f.type)
        else f.with_type(pa.binary())
        if pa.types.is_binary_view(f.type)
        else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _latest_rows(ws: Workspace, info: FeatureTableInfo, keys: pa.Table, version: int) -> pa.Table:
    """After deletes: each affected key's newest remaining row (re-published after its delete)."""
    dataset = ws.tables.scan(info.name, version=version)
    conditions = " OR ".join(
        "(" + " AND ".join(f'"{k}" = {_literal(row[k])}' for k in info.lookup_keys) + ")"
        for row in keys.to_pylist()
    )
    rows = query_dataset(dataset, columns=None, where=conditions, label=str(info.name))
    if info.timestamp_key and rows.num_rows:
        ordered = rows.sort_by([(info.timestamp_key, "descending")])
        seen: set[tuple[object, ...]] = set()
        keep = []
        for index, row in enumerate(ordered.select(info.lookup_keys).to_pylist()):
            key = tuple(row.values())
            if key not in seen:
                seen.add(key)
                keep.append(index)
        rows = ordered.take(keep)
    return rows


def _literal(value: object) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    return repr(value)


def _last_published(ws: Workspace, table: str) -> int | None:
    with ws.state.connect_engine().connect() as conn:
        value = conn.execute(
            select(feature_publishes.c.version).where(
                feature_publishes.c.feature_table == table,
                feature_publishes.c.store == _store_id(ws),
            )
        ).scalar()
    return None if value is None else int(value)


def _record(ws: Workspace, table: str, version: int) -> None:
    with ws.state.connect_engine().begin() as conn:
        upsert(
            conn,
            feature_publishes,
            {"feature_table": table, "store": _store_id(ws)},
            {"version": version, "published_at": datetime.now(UTC)},
        )


def _store_id(ws: Workspace) -> str:
    from sqlalchemy.engine import make_url

    uri = ws.target.online_store
    try:
        return make_url(uri).render_as_string(hide_password=True)[:255]
    except Exception:  # not a SQLAlchemy-shaped URI (e.g. rediss with options)
        return uri.split("@")[-1][:255]
