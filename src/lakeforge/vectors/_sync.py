"""The update job: bring an index up to its source table, from the change data feed.

The first sync (or ``full=True``) reads a snapshot of the source at one version; later
ones read the change data feed since the version the index last reflected. Of the
changes to each key only the last counts: its row is embedded and upserted, or the key
deleted, in one LanceDB commit (``merge_insert`` with a delete of the removed keys).
Then the indexes are built or brought up to date, the new version is tagged
``delta-<N>`` (the checkpoint) and, with ``pin: auto``, pinned.

Exactly once across crashes: the checkpoint is written after the data, so it never runs
ahead of it; a sync that died is redone from the last checkpoint, and redoing changes is
idempotent (upserts by key of each key's last row, deletes of absent keys). One sync per
index runs at a time: it holds the state store lease ``vectors:<index>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.state import Heartbeat, Lease
from lakeforge.vectors import _embed
from lakeforge.vectors._pins import add_pin, record_sync, synced_delta_version
from lakeforge.vectors._store import (
    VECTOR,
    IndexRef,
    VectorIndexError,
    connect,
    index_schema,
    open_table,
    plain_type,
    resolve,
)

if TYPE_CHECKING:
    from deltalake import DeltaTable
    from lancedb.table import Table

    from lakeforge._workspace import Workspace

LEASE_S = 30.0  # renewed every third; a killed sync frees the index this long after
_CDF_KEY = "delta.enableChangeDataFeed"
_CHANGE, _COMMIT = "_change_type", "_commit_version"
# Within one commit a delete comes before an insert of the same key (an overwrite).
_RANK = {"delete": 0, "update_preimage": 0, "insert": 1, "update_postimage": 1}
_ANN = {"ivf_hnsw_sq": "IvfHnswSq", "ivf_pq": "IvfPq", "ivf_flat": "IvfFlat"}


@dataclass(frozen=True)
class SyncResult:
    """What one sync did."""

    index: str
    delta_version: int  # the source version the index now reflects
    upserted: int
    deleted: int
    index_version: int  # the LanceDB version tagged with it
    seconds: float
    full: bool
    pinned: int | None  # the version search reads now


@dataclass(frozen=True)
class _Changes:
    upserts: pa.Table  # the last row of each changed key
    deleted: list[Any]  # keys whose last change is a delete


def sync(
    ws: Workspace,
    name: str,
    *,
    full: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SyncResult:
    """Sync the index ``name`` with its source; ``progress`` gets counts of embedded rows."""
    started = time.perf_counter()
    ref = resolve(ws, name)
    lease = Lease(ws.state, f"vectors:{ref.qualified}", duration=timedelta(seconds=LEASE_S))
    while not lease.acquire():
        time.sleep(0.2)  # another sync of this index runs: it finishes or its lease expires
    with Heartbeat(lease) as heartbeat:
        result = _sync(ws, ref, full, progress, heartbeat)
    return SyncResult(**{**result.__dict__, "seconds": time.perf_counter() - started})


def _sync(
    ws: Workspace,
    ref: IndexRef,
    full: bool,
    progress: Callable[[int], None] | None,
    heartbeat: Heartbeat,
) -> SyncResult:
    spec = ref.spec
    source = ws.tables.delta(spec.source)
    current = source.version()
    table = open_table(ref)
    last = None if table is None else synced_delta_version(table)
    snapshot = full or last is None
    if table is None or (last is not None and last > current):
        if last is not None:  # the source was recreated: start over
            snapshot = True
        table = create(ws, ref, source)
    if snapshot:
        changes = _snapshot(ref, source, table)
    elif last is not None and last < current:
        changes = _feed(ref, source, last + 1, current)
    else:
        changes = _Changes(pa.table({}), [])
    upserted, deleted = changes.upserts.num_rows, len(changes.deleted)
    if upserted or deleted or snapshot:
        data = _with_vectors(ref, changes.upserts, table.schema, progress)
        if heartbeat.lost.is_set():
            raise VectorIndexError(
                f"sync of {ref.qualified} stopped: its lease expired while it ran (nothing "
                "was committed; run it again)"
            )
        _apply(ref, table, data, changes.deleted, replace=snapshot)
        _build_indexes(ref, table)
    record_sync(table, current)
    pinned = None
    if spec.pin == "auto":
        add_pin(ref, table, table.version)
        pinned = table.version
    else:
        from lakeforge.vectors._pins import pin_history

        pins = pin_history(table)
        pinned = pins[-1] if pins else None
    return SyncResult(
        index=ref.qualified,
        delta_version=current,
        upserted=upserted,
        deleted=deleted,
        index_version=table.version,
        seconds=0.0,
        full=snapshot,
        pinned=pinned,
    )


def create(ws: Workspace, ref: IndexRef, source: DeltaTable | None = None) -> Table:
    """The index's (empty) LanceDB table, created if it does not exist yet."""
    existing = open_table(ref)
    if existing is not None:
        return existing
    dt = source if source is not None else ws.tables.delta(ref.spec.source)
    schema = pa.schema(dt.schema().to_arrow())
    key = schema.field(ref.spec.primary_key).type if ref.spec.primary_key in schema.names else None
    if key is not None and not (pa.types.is_integer(key) or _is_string(key)):
        raise VectorIndexError(
            f"vector index {ref.qualified}: primary key {ref.spec.primary_key} is {key}; "
            "use an integer or string column"
        )
    table: Table = connect(ref).create_table(
        ref.table, schema=index_schema(ref, schema, _dimensions(ref, dt, schema)), exist_ok=True
    )
    return table


def _is_string(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or kind == pa.string_view()


def _dimensions(ref: IndexRef, source: DeltaTable, schema: pa.Schema) -> int:
    """The vector size: the embedding model's, or that of the source's first vector."""
    spec = ref.spec
    if spec.embedding is not None:
        return _embed.dimensions(spec.embedding)
    column = spec.vector_column
    assert column is not None
    kind = schema.field(column).type if column in schema.names else None
    if isinstance(kind, pa.FixedSizeListType):
        return int(kind.list_size)
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise VectorIndexError(
            f"vector index {ref.qualified}: vector_column {column} is {kind}, not a list of numbers"
        )
    first = source.to_pyarrow_dataset().scanner(columns=[column]).head(1)[column].to_pylist()
    if not first or first[0] is None:
        raise VectorIndexError(
            f"vector index {ref.qualified}: {spec.source} has no vector yet to tell the "
            "index's size from; sync once rows arrive"
        )
    return len(first[0])


def _columns(ref: IndexRef, table: Table) -> list[str]:
    """The source columns the index reads: its own, and the vector column if precomputed."""
    kept = [c for c in table.schema.names if c != VECTOR]
    return [*kept, *([ref.spec.vector_column] if ref.spec.vector_column else [])]


def _snapshot(ref: IndexRef, source: DeltaTable, table: Table) -> _Changes:
    rows = _plain(source.to_pyarrow_dataset().to_table(columns=_columns(ref, table)))
    _check_keys(ref, rows)
    return _Changes(_last_per_key(ref, rows), [])


def _feed(ref: IndexRef, source: DeltaTable, start: int, end: int) -> _Changes:
    config = source.metadata().configuration
    if str(config.get(_CDF_KEY, "false")).lower() != "true":
        raise VectorIndexError(
            f"cannot sync {ref.qualified}: the change data feed of {ref.spec.source} is off",
            hint=f"turn it on: ws.tables.delta({ref.spec.source!r}, write=True).alter."
            f"set_table_properties({{{_CDF_KEY!r}: 'true'}}) (tables Lakeforge creates have "
            f"it), then run `lakeforge vectors sync {ref.spec.name} --full`",
        )
    try:
        reader = source.load_cdf(starting_version=start, ending_version=end)
        feed = pa.RecordBatchReader.from_stream(reader).read_all()
    except Exception as exc:  # delta-rs: versions vacuumed, or the feed was off for some
        raise VectorIndexError(
            f"cannot read the change data feed of {ref.spec.source} from version {start} "
            f"to {end}: {exc}",
            hint=f"rebuild from a snapshot: `lakeforge vectors sync {ref.spec.name} --full`",
        ) from None
    feed = _plain(feed)
    feed = feed.filter(pc.not_equal(feed[_CHANGE], "update_preimage"))
    _check_keys(ref, feed)
    if feed.num_rows == 0:
        return _Changes(feed, [])
    rank = pa.array([_RANK[c] for c in feed[_CHANGE].to_pylist()], pa.int8())
    order = pc.sort_indices(
        pa.table(
            {"v": feed[_COMMIT], "r": rank, "i": pa.array(np.arange(feed.num_rows))},
        ),
        sort_keys=[("v", "ascending"), ("r", "ascending"), ("i", "ascending")],
    )
    last: dict[Any, int] = {}
    for position, key in zip(
        order.to_pylist(), feed[ref.spec.primary_key].take(order).to_pylist(), strict=True
    ):
        last[key] = position
    kinds = feed[_CHANGE].to_pylist()
    keep = sorted(p for p in last.values() if kinds[p] != "delete")
    deleted = [k for k, p in last.items() if kinds[p] == "delete"]
    extra = [c for c in (_CHANGE, _COMMIT, "_commit_timestamp") if c in feed.column_names]
    upserts = feed.take(pa.array(keep, pa.int64())).drop_columns(extra)
    return _Changes(upserts, deleted)


def _plain(rows: pa.Table) -> pa.Table:
    """``rows`` with plain string and binary columns (pyarrow cannot take from views)."""
    schema = pa.schema([f.with_type(plain_type(f.type)) for f in rows.schema])
    return rows if schema == rows.schema else rows.cast(schema)


def _check_keys(ref: IndexRef, rows: pa.Table) -> None:
    nulls = rows[ref.spec.primary_key].null_count
    if nulls:
        raise VectorIndexError(
            f"cannot sync {ref.qualified}: {nulls} row(s) of {ref.spec.source} have no "
            f"{ref.spec.primary_key} (the primary key must not be null)"
        )


def _last_per_key(ref: IndexRef, rows: pa.Table) -> pa.Table:
    """``rows`` with one row per key (the last one: a key may repeat in the source)."""
    keys = rows[ref.spec.primary_key].to_pylist()
    last = {key: i for i, key in enumerate(keys)}
    if len(last) == len(keys):
        return rows
    return rows.take(pa.array(sorted(last.values()), pa.int64()))


def _with_vectors(
    ref: IndexRef,
    rows: pa.Table,
    schema: pa.Schema,
    progress: Callable[[int], None] | None,
) -> pa.Table:
    """``rows`` in the index's schema, with their vectors (embedded or taken as given)."""
    spec = ref.spec
    size = schema.field(VECTOR).type.list_size
    if rows.num_rows == 0:
        return schema.empty_table()
    if spec.embedding is not None and spec.text_column is not None:
        texts = rows[spec.text_column].to_pylist()
        vectors = _embed.embed(spec.embedding, texts, progress=progress)
    else:
        assert spec.vector_column is not None
        column = rows[spec.vector_column]
        if column.null_count:
            raise VectorIndexError(
                f"cannot sync {ref.qualified}: {column.null_count} row(s) have no "
                f"{spec.vector_column}"
            )
        vectors = np.asarray(column.to_pylist(), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != size:
        raise VectorIndexError(
            f"cannot sync {ref.qualified}: vectors have {vectors.shape[-1]} dimensions, "
            f"the index {size}"
        )
    flat = pa.array(vectors.reshape(-1), pa.float32())
    columns = {
        name: rows[name].cast(schema.field(name).type) for name in schema.names if name != VECTOR
    }
    columns[VECTOR] = pa.FixedSizeListArray.from_arrays(flat, size)
    return pa.table(columns, schema=schema)


def sql_literal(value: Any) -> str:
    """A key as a SQL literal (integers and strings only: keys are checked to be these)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise VectorIndexError(f"key {value!r} is neither an integer nor a string")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _apply(
    ref: IndexRef, table: Table, data: pa.Table, deleted: list[Any], *, replace: bool
) -> None:
    """Upsert ``data`` by key and delete ``deleted`` (all else too when ``replace``): one commit."""
    key = ref.spec.primary_key
    if replace and table.count_rows() == 0:
        if data.num_rows:
            table.add(data)
        return
    merge = table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all()
    if replace:
        merge = merge.when_not_matched_by_source_delete("true")
    elif deleted:
        keys = ", ".join(sql_literal(k) for k in deleted)
        merge = merge.when_not_matched_by_source_delete(f"{key} IN ({keys})")
    merge.execute(data)


def _build_indexes(ref: IndexRef, table: Table) -> None:
    """Build the ANN index past ``min_rows`` rows and the keyword index; index new rows."""
    import lancedb.index as li

    spec = ref.spec
    existing = {tuple(i.columns): i for i in table.list_indices()}
    rows = table.count_rows()
    built = False
    params = spec.index
    if params.type != "none" and (VECTOR,) not in existing and rows >= params.min_rows:
        options: dict[str, Any] = {"distance_type": params.metric}
        if params.num_partitions is not None:
            options["num_partitions"] = params.num_partitions
        if params.type == "ivf_hnsw_sq":
            options |= {"m": params.m, "ef_construction": params.ef_construction}
        if params.type == "ivf_pq" and params.num_sub_vectors is not None:
            options["num_sub_vectors"] = params.num_sub_vectors
        config = getattr(li, _ANN[params.type])(**options)
        table.create_index(VECTOR, config=config)
        built = True
    text = spec.text_column
    if spec.full_text and text is not None and (text,) not in existing and rows:
        table.create_index(text, config=li.FTS())
        built = True
    if existing and not built:
        table.optimize()  # new rows into the existing indexes, small files compacted
