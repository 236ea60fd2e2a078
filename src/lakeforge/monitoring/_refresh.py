"""Refreshing a monitor: read what changed, recompute the windows it touches, replace
their rows in the metric tables, then evaluate the monitor's alerts.

The version of the monitored table a refresh has processed is the application
transaction its commits carry (``_tables``), so the next refresh reads the change data
feed from there: only the windows new, changed or deleted rows fall in are read again
from the table snapshot (a window's profile needs all its rows). Their summaries are
kept (``<table>_monitor_state``), so the next window's CONSECUTIVE drift is recomputed
without reading it, and the baseline's summaries are computed once by
:func:`set_baseline` and never read again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.errors import LakeforgeError
from lakeforge.lakehouse import TableName
from lakeforge.monitoring._compute import TABLE, Profiler, Read, Summary
from lakeforge.monitoring._registry import monitor_spec
from lakeforge.monitoring._sources import Labels, Source, check_columns, serving_requests
from lakeforge.monitoring._tables import STATE_SCHEMA as STATE
from lakeforge.monitoring._tables import (
    OutputTables,
    app_id,
    drift_schema,
    output_tables_of,
    processed_version,
    profile_schema,
    replace_rows,
    sql_text,
    to_table,
    window_predicate,
)
from lakeforge.monitoring._windows import (
    SNAPSHOT,
    SNAPSHOT_WINDOW,
    Window,
    merged,
    start_counts,
    window_end,
)
from lakeforge.project import MonitorSpec

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

WhereKey = tuple[str | None, str | None, str]
BATCH_ROWS = 250_000
"""Consecutive windows with at most this many rows in all are read together."""
GroupKey = tuple[str, datetime, str | None]  # granularity, window start, model version


@dataclass
class RefreshResult:
    """What one refresh did: the windows it recomputed and the rows it read and wrote."""

    monitor: str
    windows: list[Window]
    rows_read: int
    profile_rows: int
    drift_rows: int
    tables: tuple[str, str]
    alerts: list[Any] = field(default_factory=list)
    by_granularity: dict[str, list[Window]] = field(default_factory=dict)
    versions: tuple[int | None, int] = (None, 0)  # monitored table: processed before, now
    full: bool = False


def output_tables(ws: Workspace, name: str) -> tuple[str, str]:
    """The monitor's profile and drift metrics tables."""
    tables = output_tables_of(monitor_spec(ws, name), ws.target.catalog)
    return str(tables.profile), str(tables.drift)


def refresh(ws: Workspace, name: str, *, full: bool = False) -> RefreshResult:
    """Bring monitor ``name``'s metric tables up to date with its table (and labels).

    Incremental unless ``full`` or nothing was processed yet; then every window is
    recomputed from the current snapshot and replaces all the monitor's rows.
    """
    spec = monitor_spec(ws, name)
    tables = output_tables_of(spec, ws.target.catalog)
    source = Source(ws, spec)
    if not source.serving:
        check_columns(spec, source.raw_schema, source.table)
    labels = Labels(ws, spec) if spec.labels is not None else None
    versions = {app_id(name): source.version}
    if labels is not None:
        versions[app_id(name, "labels")] = labels.version
    done = _processed(ws, tables, app_id(name))
    done_labels = _processed(ws, tables, app_id(name, "labels")) if labels else None
    granularities = spec.granularity_list
    touched: dict[str, set[datetime]] | None = None
    if not full and done is not None and (labels is None or done_labels is not None):
        touched = _touched(source, labels, done, done_labels, granularities)
    baseline = _baseline(ws, spec, tables)

    ranges = None if touched is None else _ranges(touched)
    if source.serving:
        profiler, windows, summaries = _profile_log(source, labels, touched, ranges)
    else:
        profiler, windows, summaries = _profile_table(source, labels, touched, ranges)

    drift_rows, drift_windows = _drift(
        ws, spec, tables, profiler, summaries, windows, baseline, touched is None
    )
    now = datetime.now(UTC)
    common = {
        "monitor_name": name,
        "refreshed_at": now,
        "logging_table_commit_version": source.version,
    }
    state_rows = [{**s.state_row("INPUT", source.version), "monitor_name": name} for s in summaries]
    profile_rows = [{**r, **common} for r in profiler.profile_rows(summaries, "INPUT")]
    drift_rows = [{**r, **common} for r in drift_rows]
    mine = f"monitor_name = {sql_text(name)}"
    if touched is None:
        inputs, drifts = f"{mine} AND log_type = 'INPUT'", mine
    else:
        inputs = f"{mine} AND log_type = 'INPUT' AND ({_windows_sql(windows)})"
        drifts = f"{mine} AND ({_windows_sql(drift_windows)})"
    for out, out_rows, schema, predicate in (
        (tables.state, state_rows, STATE, inputs),
        (tables.profile, profile_rows, profile_schema(spec), inputs),
        (tables.drift, drift_rows, drift_schema(spec), drifts),
    ):
        replace_rows(ws, out, to_table(out_rows, schema), predicate=predicate, versions=versions)

    by_granularity = {g: [(s, window_end(s, g)) for s in sorted(v)] for g, v in windows.items()}
    result = RefreshResult(
        monitor=name,
        windows=sorted({w for ws_ in by_granularity.values() for w in ws_}),
        rows_read=source.rows_read,
        profile_rows=len(profile_rows),
        drift_rows=len(drift_rows),
        tables=(str(tables.profile), str(tables.drift)),
        by_granularity=by_granularity,
        versions=(done, source.version),
        full=touched is None,
    )
    from lakeforge.monitoring._alerts import evaluate

    result.alerts = list(evaluate(ws, spec, result))
    return result


# -- profiling the windows -------------------------------------------------------------


def _profile_table(
    source: Source,
    labels: Labels | None,
    touched: dict[str, set[datetime]] | None,
    ranges: list[Window] | None,
) -> tuple[Profiler, dict[str, set[datetime]], list[Summary]]:
    """Summaries of the windows of a table (every window, or the ``touched`` ones): their
    rows are counted from the time column, then read window batch by window batch, and in
    each batch column group by column group (:meth:`Profiler.windows`)."""
    spec = source.spec
    counts = source.window_counts(spec.granularity_list, ranges)
    windows = touched if touched is not None else {g: set(c) for g, c in counts.items()}
    schema = source.raw_schema
    if labels is not None:
        schema = labels.attach(schema.empty_table()).schema
    profiler = Profiler(spec, schema, serving=False)
    summaries: list[Summary] = []
    for granularity, starts in windows.items():
        for batch in _batches(sorted(starts), counts[granularity]):
            spans = [(start, window_end(start, granularity)) for start in batch]
            read = _reader(source, labels, None if granularity == SNAPSHOT else spans)
            summaries += profiler.windows(read, [None] * len(spans), granularity, spans)
    return profiler, windows, summaries


def _batches(starts: list[datetime], counts: dict[datetime, int]) -> list[list[datetime]]:
    """Consecutive windows read together while their rows stay within ``BATCH_ROWS`` (a
    larger window is a batch of its own): few reads of many small windows, and memory
    bounded by one batch."""
    found: list[list[datetime]] = []
    rows = 0
    for start in starts:
        count = counts.get(start, 0)
        if not found or rows + count > BATCH_ROWS:
            found.append([])
            rows = 0
        found[-1].append(start)
        rows += count
    return found


def _reader(source: Source, labels: Labels | None, spans: list[Window] | None) -> Read:
    """``read`` for :meth:`Profiler.windows`: columns of the rows of each window of
    ``spans`` (None: one window of every row); labels joined when the label is asked for."""
    several = spans is not None and len(spans) > 1

    def read(columns: list[str]) -> list[pa.Table]:
        labelled = labels is not None and labels.target_col in columns
        wanted = [c for c in columns if labels is None or c != labels.target_col]
        wanted += labels.on if labels is not None and labelled else []
        wanted += [source.time_column] if several and source.time_column else []
        rows = source.rows(spans, list(dict.fromkeys(wanted)))
        parts = source.split(rows, spans) if spans is not None and several else [rows]
        if labels is not None and labelled:
            parts = [labels.attach(part) for part in parts]
        return [part.select(columns) for part in parts]

    return read


def _profile_log(
    source: Source,
    labels: Labels | None,
    touched: dict[str, set[datetime]] | None,
    ranges: list[Window] | None,
) -> tuple[Profiler, dict[str, set[datetime]], list[Summary]]:
    """Summaries of the windows of a serving log: the log's rows of every window (or the
    ``touched`` ones) are read at once and unpacked into records (their columns and types
    come from all of them), then profiled window by window."""
    spec = source.spec
    raw = source.read(ranges)
    records = source.records(raw)
    requests = serving_requests(raw)
    if records.num_rows:
        check_columns(spec, records.schema, source.table)
    if labels is not None:
        records = labels.join(records)
    profiler = Profiler(spec, records.schema, serving=True)
    windows = touched
    if windows is None:
        windows = _windows_in(source, records, requests, spec.granularity_list)
    summaries: list[Summary] = []
    for granularity, starts in windows.items():
        for start in sorted(starts):
            window = (start, window_end(start, granularity))
            rows = _in_window(source, records, window, granularity)
            calls = _in_window(source, requests, window, granularity)
            summaries += profiler.windows(_held(rows), [calls], granularity, [window])
    return profiler, windows, summaries


def _held(rows: pa.Table) -> Read:
    """``read`` for :meth:`Profiler.windows` of one window whose rows are in memory."""
    return lambda columns: [rows.select(columns)]


# -- what to recompute ------------------------------------------------------------------


def _processed(ws: Workspace, tables: OutputTables, app: str) -> int | None:
    """The source version every output table has processed (the smallest; None: any none)."""
    found = [processed_version(ws, t, app) for t in (tables.state, tables.profile, tables.drift)]
    return None if any(v is None for v in found) else min(v for v in found if v is not None)


def _touched(
    source: Source,
    labels: Labels | None,
    done: int,
    done_labels: int | None,
    granularities: list[str],
) -> dict[str, set[datetime]] | None:
    """Windows that rows changed since ``done`` (or labels since ``done_labels``) fall in;
    None when the change data feed cannot tell (a full refresh follows)."""
    found: dict[str, set[datetime]] = {g: set() for g in granularities}
    times: list[pa.ChunkedArray] = []
    if done < source.version:
        changes = source.changes(done)
        if changes is None:
            return None
        if changes.num_rows:
            times.append(_times(source, changes))
    if labels is not None and done_labels is not None:
        keys = labels.changed_keys(done_labels)
        if keys is not None and keys.num_rows:
            times.append(_labelled_times(source, labels, keys))
    for chunk in times:
        for granularity in granularities:
            if granularity == SNAPSHOT:
                found[granularity].add(SNAPSHOT_WINDOW[0])
            else:
                found[granularity] |= set(start_counts(chunk, granularity))
    return found


def _times(source: Source, rows: pa.Table) -> pa.ChunkedArray:
    if source.spec.profile == SNAPSHOT:
        return pa.chunked_array(
            [pa.array([SNAPSHOT_WINDOW[0]] * rows.num_rows, pa.timestamp("us", tz="UTC"))]
        )
    return source.timestamps(rows)


def _labelled_times(source: Source, labels: Labels, keys: pa.Table) -> pa.ChunkedArray:
    """The times of the monitored rows whose labels changed."""
    if source.serving:
        records = source.records(source.read(None))
    else:
        wanted = [*labels.on, *(c for c in [source.time_column] if c)]
        records = source.rows(
            None, [c for c in dict.fromkeys(wanted) if c in source.raw_schema.names]
        )
        source.rows_read += records.num_rows
    if any(c not in records.column_names for c in labels.on):
        return pa.chunked_array([], pa.timestamp("us", tz="UTC"))
    keys = keys.cast(pa.schema([records.schema.field(c) for c in labels.on]))
    distinct = keys.group_by(labels.on).aggregate([])
    ts = _times(source, records)
    matched = records.select(labels.on).append_column("_lf_ts", ts)
    matched = matched.join(distinct, keys=labels.on, join_type="inner")
    return matched.column("_lf_ts")


def _windows_in(
    source: Source, records: pa.Table, requests: pa.Table, granularities: list[str]
) -> dict[str, set[datetime]]:
    """Every window a serving log's records and requests fall in."""
    times = [_times(source, records)]
    if requests.num_rows:
        times.append(requests.column("timestamp"))
    found: dict[str, set[datetime]] = {}
    for granularity in granularities:
        starts: set[datetime] = set()
        for chunk in times:
            if granularity == SNAPSHOT:
                starts.add(SNAPSHOT_WINDOW[0])
            else:
                starts |= set(start_counts(chunk, granularity))
        found[granularity] = starts
    return found


def _ranges(touched: dict[str, set[datetime]]) -> list[Window]:
    """The touched windows of every granularity as few time ranges."""
    return merged(
        [(start, window_end(start, g)) for g, starts in touched.items() for start in starts]
    )


def _in_window(source: Source, rows: pa.Table, window: Window, granularity: str) -> pa.Table:
    if granularity == SNAPSHOT:
        return rows
    ts = _times(source, rows)
    start, end = (pa.scalar(t, pa.timestamp("us", tz="UTC")) for t in window)
    mask = pc.and_(pc.greater_equal(ts, start), pc.less(ts, end))
    return rows.filter(pc.fill_null(mask, False))


def _windows_sql(windows: dict[str, set[datetime]]) -> str:
    parts = [window_predicate(g, starts) for g, starts in windows.items() if starts]
    return " OR ".join(parts) if parts else "1 = 0"


# -- drift ------------------------------------------------------------------------------


def _drift(
    ws: Workspace,
    spec: MonitorSpec,
    tables: OutputTables,
    profiler: Profiler,
    computed: list[Summary],
    windows: dict[str, set[datetime]],
    baseline: dict[WhereKey, Summary],
    full: bool,
) -> tuple[list[dict[str, Any]], dict[str, set[datetime]]]:
    """Drift rows of the recomputed windows and of each window right after one (its
    CONSECUTIVE reference changed); the windows whose drift rows they replace."""
    groups = _group(computed)
    existing = {} if full else _existing_windows(ws, tables.state, spec.name)
    redo: dict[str, set[datetime]] = {g: set(s) for g, s in windows.items()}
    previous: dict[tuple[str, datetime], datetime] = {}
    for granularity, starts in windows.items():
        if granularity == SNAPSHOT:
            continue
        every = sorted(set(existing.get(granularity, ())) | starts)
        for i, start in enumerate(every):
            if i > 0:
                previous[(granularity, start)] = every[i - 1]
            if start in starts and i + 1 < len(every) and every[i + 1] not in starts:
                redo[granularity].add(every[i + 1])
    for granularity, starts in redo.items():
        for start in starts:
            if start in windows.get(granularity, set()):
                continue
            prev = [
                s
                for s in sorted(set(existing.get(granularity, ())) | windows[granularity])
                if s < start
            ]
            if prev:
                previous[(granularity, start)] = prev[-1]
    wanted = {
        (g, s)
        for g, starts in redo.items()
        for s in {*starts, *(previous.get((g, x)) for x in starts)}
        if s is not None and s not in windows.get(g, set())
    }
    groups.update(_group(_load_windows(ws, tables.state, spec.name, wanted)))
    rows: list[dict[str, Any]] = []
    for (granularity, start, version), current in sorted(groups.items(), key=_order):
        if start not in redo.get(granularity, set()):
            continue
        if baseline:
            rows += profiler.drift(current, baseline, "BASELINE")
        before = previous.get((granularity, start))
        reference = groups.get((granularity, before, version)) if before else None
        if reference:
            rows += profiler.drift(current, {s.where: s for s in reference}, "CONSECUTIVE")
    return rows, redo


def _order(item: tuple[GroupKey, list[Summary]]) -> tuple[str, datetime, str]:
    granularity, start, version = item[0]
    return granularity, start, version or ""


def _group(summaries: Iterable[Summary]) -> dict[GroupKey, list[Summary]]:
    found: dict[GroupKey, list[Summary]] = defaultdict(list)
    for summary in summaries:
        assert summary.granularity is not None and summary.window_start is not None
        found[(summary.granularity, summary.window_start, summary.model_version)].append(summary)
    return dict(found)


def _existing_windows(ws: Workspace, state: TableName, name: str) -> dict[str, list[datetime]]:
    """The windows the state table holds for the monitor, per granularity."""
    if not ws.tables.exists(state):
        return {}
    rows = ws.tables.read(
        state,
        columns=["granularity", "window_start"],
        filter=f"monitor_name = {sql_text(name)} AND log_type = 'INPUT' AND column_name = '{TABLE}'",
    )
    found: dict[str, set[datetime]] = defaultdict(set)
    for row in rows.to_pylist():
        found[row["granularity"]].add(row["window_start"])
    return {g: sorted(s) for g, s in found.items()}


def _load_windows(
    ws: Workspace, state: TableName, name: str, windows: set[tuple[str, datetime]]
) -> list[Summary]:
    if not windows or not ws.tables.exists(state):
        return []
    by_granularity: dict[str, set[datetime]] = defaultdict(set)
    for granularity, start in windows:
        by_granularity[granularity].add(start)
    where = f"monitor_name = {sql_text(name)} AND log_type = 'INPUT' AND ({_windows_sql(dict(by_granularity))})"
    return [Summary.from_state(r) for r in ws.tables.read(state, filter=where).to_pylist()]


# -- baseline ---------------------------------------------------------------------------


def _load_baseline(ws: Workspace, state: TableName, name: str) -> dict[WhereKey, Summary]:
    if not ws.tables.exists(state):
        return {}
    rows = ws.tables.read(
        state, filter=f"monitor_name = {sql_text(name)} AND log_type = 'BASELINE'"
    ).to_pylist()
    return {s.where: s for s in map(Summary.from_state, rows)}


def _baseline(ws: Workspace, spec: MonitorSpec, tables: OutputTables) -> dict[WhereKey, Summary]:
    """The stored baseline summaries; computed now if the monitor has a baseline table
    but none was stored yet."""
    found = _load_baseline(ws, tables.state, spec.name)
    if found or spec.baseline_table is None:
        return found
    return {s.where: s for s in _compute_baseline(ws, spec, tables)}


def set_baseline(ws: Workspace, name: str) -> None:
    """Compute and store the summaries of the monitor's baseline table (read once, here),
    and recompute every window's BASELINE drift rows against them."""
    spec = monitor_spec(ws, name)
    tables = output_tables_of(spec, ws.target.catalog)
    baseline = {s.where: s for s in _compute_baseline(ws, spec, tables)}
    if not ws.tables.exists(tables.state):
        return
    rows = ws.tables.read(
        tables.state, filter=f"monitor_name = {sql_text(name)} AND log_type = 'INPUT'"
    ).to_pylist()
    schema = ws.tables.schema(tables.profile) if ws.tables.exists(tables.profile) else None
    profiler = Profiler(spec, schema or pa.schema([]), serving=False)
    drift_rows: list[dict[str, Any]] = []
    for _key, current in sorted(_group(map(Summary.from_state, rows)).items(), key=_order):
        drift_rows += profiler.drift(current, baseline, "BASELINE")
    common = {"monitor_name": name, "refreshed_at": datetime.now(UTC)}
    ws.tables.write(
        tables.drift,
        to_table([{**r, **common} for r in drift_rows], drift_schema(spec)),
        mode="overwrite" if ws.tables.exists(tables.drift) else "append",
        replace_where=f"monitor_name = {sql_text(name)} AND drift_type = 'BASELINE'"
        if ws.tables.exists(tables.drift)
        else None,
        quality_log=False,
    )


def _compute_baseline(ws: Workspace, spec: MonitorSpec, tables: OutputTables) -> list[Summary]:
    if spec.baseline_table is None:
        raise LakeforgeError(f"monitor {spec.name!r} has no baseline_table to set a baseline from")
    source = Source(ws, spec, spec.baseline_table)
    version = source.version
    schema, read = source.raw_schema, _reader(source, None, None)
    if source.serving:
        rows = source.records(source.read(None))
        schema, read = rows.schema, _held(rows)
    profiler = Profiler(spec, schema, serving=False)
    profiler.version_col = None  # the baseline compares with every model version
    summaries = profiler.windows(read, [None], None, [None])
    name = spec.name
    only = f"monitor_name = {sql_text(name)} AND log_type = 'BASELINE'"
    state = [{**s.state_row("BASELINE", version), "monitor_name": name} for s in summaries]
    common = {
        "monitor_name": name,
        "refreshed_at": datetime.now(UTC),
        "logging_table_commit_version": version,
    }
    profile = [{**r, **common} for r in profiler.profile_rows(summaries, "BASELINE")]
    for target, data in (
        (tables.state, to_table(state, STATE)),
        (tables.profile, to_table(profile, profile_schema(spec))),
    ):
        exists = ws.tables.exists(target)
        ws.tables.write(
            target,
            data,
            mode="overwrite" if exists else "append",
            replace_where=only if exists else None,
            quality_log=False,
        )
    return summaries
