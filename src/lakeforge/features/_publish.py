"""Publishing feature tables to the target's online store: a full snapshot, or only what
the Delta change data feed says changed since the last publish.

The online store keeps the latest row per entity key (a late older row never replaces
a newer one). For a table with a sequence column the latest row is the one with the
largest (timestamp, sequence value): a publish then writes, for each key it touches, that
row as computed from the table, so the online row agrees with training sets whatever
order rows arrived in. A publish reads up to the Delta version current when it starts
and records that version only after writing, so writes that land meanwhile are picked
up by the next publish: none is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select

from lakeforge.features._tables import FeatureTableInfo, FeatureTables, sql_name
from lakeforge.features.online import OnlineStore, open_online_store
from lakeforge.lakehouse import Lakehouse, TableName, connect_duckdb, register_snapshot
from lakeforge.state import StateStore, feature_publishes, upsert

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

PublishMode = Literal["auto", "snapshot", "incremental"]
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
    ws: Workspace,
    name: str | TableName,
    *,
    mode: PublishMode = "auto",
    store: OnlineStore | None = None,
    progress: Callable[[int], None] | None = None,
) -> PublishResult:
    """Copy a feature table to the online store.

    ``auto`` publishes incrementally from the change data feed when the table was
    published before and its feed covers the versions since, else a snapshot.
    ``progress`` is called with the number of rows written so far after each batch.
    """
    info = FeatureTables(ws.tables).describe(name)
    table = str(info.name)
    own = store is None
    store = store or online_store(ws)
    try:
        target_version = info.version
        store_id = _store_id(ws.target.online_store)
        last = _last_published(ws.state, store_id, table)
        if last == target_version and mode != "snapshot":
            return PublishResult(table, "unchanged", last, target_version, 0, 0)
        if mode == "snapshot" or last is None or last > target_version:
            written = _snapshot(ws.tables, info, _Writer(store, info, progress), target_version)
            result = PublishResult(table, "snapshot", last, target_version, written, 0)
        else:
            writer = _Writer(store, info, progress)
            written, deleted = _incremental(ws.tables, info, writer, last, target_version)
            result = PublishResult(table, "incremental", last, target_version, written, deleted)
        _record(ws.state, store_id, table, target_version)
        return result
    finally:
        if own:
            store.close()


class _Writer:
    """Writes batches of a feature table to the store; reports the running row count."""

    def __init__(
        self, store: OnlineStore, info: FeatureTableInfo, progress: Callable[[int], None] | None
    ) -> None:
        self.store, self.info, self.progress = store, info, progress
        self.total = 0

    def __call__(self, rows: pa.Table) -> int:
        if rows.num_rows == 0:
            return 0
        info = self.info
        self.store.write(
            str(info.name),
            rows.select([*info.lookup_keys, *_ts(info), *info.features]),
            keys=info.lookup_keys,
            timestamp=info.timestamp_key,
            features=list(info.features),
        )
        self.total += rows.num_rows
        if self.progress is not None:
            self.progress(self.total)
        return int(rows.num_rows)


def _ts(info: FeatureTableInfo) -> list[str]:
    return [info.timestamp_key] if info.timestamp_key else []


def _snapshot(lakehouse: Lakehouse, info: FeatureTableInfo, write: _Writer, version: int) -> int:
    table = str(info.name)
    if table in write.store.tables():
        write.store.drop(table)  # rows deleted from the table must not survive a snapshot
    if info.sequence_by is not None:
        return sum(write(rows) for rows in _latest_rows(lakehouse, info, version))
    dataset = lakehouse.delta(info.name, version=version).to_pyarrow_dataset()
    written = 0
    for batch in dataset.to_batches(batch_size=_BATCH_ROWS):
        written += write(pa.Table.from_batches([batch]))
    return written


def _incremental(
    lakehouse: Lakehouse, info: FeatureTableInfo, write: _Writer, last: int, version: int
) -> tuple[int, int]:
    changes = _plain(
        lakehouse.changes(info.name, starting_version=last + 1, ending_version=version)
    )
    kinds = changes.column("_change_type")
    upserts = changes.filter(pc.is_in(kinds, pa.array(["insert", "update_postimage"])))
    deletes = changes.filter(pc.equal(kinds, "delete"))
    written = deleted = 0
    if deletes.num_rows:  # each deleted key falls back to its newest remaining row, below
        deleted = write.store.delete(
            str(info.name), _distinct_keys(info, deletes), keys=info.lookup_keys
        )
    if info.sequence_by is None:
        written = write(upserts.drop_columns(list(_CDF_COLUMNS)))
        refresh = deletes
    else:  # the store does not compare sequences: write each touched key's latest row
        refresh = pa.concat_tables([upserts, deletes])
    if refresh.num_rows:
        latest = _latest_rows(lakehouse, info, version, _distinct_keys(info, refresh))
        written += sum(write(rows) for rows in latest)
    return written, deleted


def _distinct_keys(info: FeatureTableInfo, rows: pa.Table) -> pa.Table:
    return rows.select(info.lookup_keys).group_by(info.lookup_keys).aggregate([])


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


def _latest_rows(
    lakehouse: Lakehouse, info: FeatureTableInfo, version: int, keys: pa.Table | None = None
) -> Iterator[pa.Table]:
    """The latest row per key at ``version`` (of ``keys`` only, when given), in batches.

    Latest: the largest timestamp, then sequence value, then feature values (column by
    column, nulls lowest): the order in which training sets resolve equal timestamps.
    """
    columns = [*info.lookup_keys, *_ts(info), *info.features]
    sequence = [info.sequence_by] if info.sequence_by else []
    order = [f"{sql_name(c)} DESC NULLS LAST" for c in [*_ts(info), *sequence, *info.features]]
    partition = ", ".join(sql_name(c) for c in info.lookup_keys)
    where = ""
    con = connect_duckdb()
    try:
        con.execute("SET TimeZone = 'UTC'")
        register_snapshot(con, "__lf_table", lakehouse, info.name, version=version)
        if keys is not None:
            con.register("__lf_keys", keys)
            match = " AND ".join(f"k.{sql_name(c)} = t.{sql_name(c)}" for c in info.lookup_keys)
            where = f"WHERE EXISTS (SELECT 1 FROM __lf_keys k WHERE {match})"
        reader = con.sql(
            f"SELECT {', '.join(sql_name(c) for c in columns)} FROM __lf_table t {where} "
            f"QUALIFY row_number() OVER (PARTITION BY {partition} "
            f"ORDER BY {', '.join(order) or '1'}) = 1"
        ).to_arrow_reader(_BATCH_ROWS)
        schema = pa.schema(
            [info.schema.field(c).remove_metadata().with_nullable(True) for c in columns]
        )
        for batch in reader:
            yield pa.Table.from_batches([batch]).cast(schema)
    finally:
        con.close()


def _last_published(state: StateStore, store_id: str, table: str) -> int | None:
    with state.connect_engine().connect() as conn:
        value = conn.execute(
            select(feature_publishes.c.version).where(
                feature_publishes.c.feature_table == table,
                feature_publishes.c.store == store_id,
            )
        ).scalar()
    return None if value is None else int(value)


def _record(state: StateStore, store_id: str, table: str, version: int) -> None:
    with state.connect_engine().begin() as conn:
        upsert(
            conn,
            feature_publishes,
            {"feature_table": table, "store": store_id},
            {"version": version, "published_at": datetime.now(UTC)},
        )


def _store_id(uri: str) -> str:
    """The online store's URI without its password: the key of its publish records."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)[:255]
    except Exception:  # not a SQLAlchemy-shaped URI (e.g. rediss with options)
        return uri.split("@")[-1][:255]
