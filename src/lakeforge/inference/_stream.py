"""Streaming scoring: score what arrived in a Delta table since the last checkpoint.

New rows come from the input table's change data feed, in micro-batches of whole input
versions (up to about ``max_rows`` rows, at least one version). Inserts and update
post-images are scored; deletes are recorded with a null prediction so a consumer can
apply them. Every output row carries ``change_type`` (``insert``, ``update_postimage`` or
``delete``) and, as ``input_version``, the input version the change was committed in.
(Not ``_change_type``/``_commit_version``: Delta reserves those names on tables with a
change data feed, as the output table has, and its own feed would no longer read.)

The checkpoint is the output table's application transaction
``lakeforge.stream/<output>/<input>`` whose version is the last input version a
micro-batch covered: it is committed with the output rows, in one Delta commit, so the
output is exactly-once across crashes and restarts. Errors are committed first with the
same transaction; a micro-batch whose errors committed but whose output did not is
redone exactly (same versions, same model version) on restart.

A first run (no checkpoint) scores everything the table holds: through the change data
feed from version 0 when the feed reaches back that far (tables Lakeforge creates have it
on from the start), else as one snapshot read of the latest version, then the feed
onwards. Each micro-batch resolves the model URI's alias once, at its start, so an alias
moved mid-stream shows at a micro-batch boundary, never within one commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from deltalake.exceptions import DeltaError

from lakeforge.errors import LakeforgeError
from lakeforge.inference._load import URI, ModelRef, resolve_model
from lakeforge.inference._model import ERRORS_SCHEMA, Features, ScoredBatch, Scorer
from lakeforge.inference._sink import DeltaSink
from lakeforge.lakehouse import primary_keys_of

if TYPE_CHECKING:
    from deltalake import DeltaTable

    from lakeforge._workspace import Workspace

log = logging.getLogger("lakeforge.inference")

APP_PREFIX = "lakeforge.stream/"
CHANGE_TYPE = "change_type"  # in the output
CDF_CHANGE_TYPE = "_change_type"  # in the change data feed
COMMIT_VERSION = "_commit_version"
DELETE = "delete"
SCORED_CHANGES = ("insert", "update_postimage")
_CDF_KEY = "delta.enableChangeDataFeed"
_CDF_EXTRA = ("_commit_timestamp",)
_LOADED_MODELS = 2


@dataclass(frozen=True)
class MicroBatch:
    """One committed micro-batch: the input versions it covered and what it wrote."""

    first_version: int
    last_version: int
    rows_scored: int
    rows_deleted: int
    rows_failed: int
    model_version: str
    output_version: int | None  # the output table's version (None: nothing committed)


@dataclass
class StreamResult:
    """What one :func:`run_stream` call did."""

    micro_batches: int = 0
    rows_scored: int = 0
    rows_deleted: int = 0
    rows_failed: int = 0
    last_input_version: int | None = None  # the last input version covered (checkpoint)
    model_versions: list[str] = field(default_factory=list)  # in order of first use

    def add(self, batch: MicroBatch) -> None:
        self.micro_batches += 1
        self.rows_scored += batch.rows_scored
        self.rows_deleted += batch.rows_deleted
        self.rows_failed += batch.rows_failed
        self.last_input_version = batch.last_version
        if batch.model_version not in self.model_versions:
            self.model_versions.append(batch.model_version)


def run_stream(
    ws: Workspace,
    model_uri: str,
    *,
    input: str,
    output: str,
    keys: Sequence[str] | None = None,
    keep_columns: bool = False,
    prediction: str = "prediction",
    features: Features = "offline",
    once: bool = False,
    interval_s: float = 5.0,
    max_rows: int = 100_000,
    fail_fast: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[MicroBatch], None] | None = None,
) -> StreamResult:
    """Score the rows that arrived in ``input`` since the checkpoint into ``output``.

    ``once``: process the versions there at the start, then return (a job task); else
    poll every ``interval_s`` until ``stop`` is set (a micro-batch under way finishes
    first). ``progress`` is called after each micro-batch commits. Output rows carry
    ``keys`` (default: the input's primary keys, else all columns; ``keep_columns``: all),
    the prediction, the model columns (null for deletes) and ``change_type``.
    """
    if interval_s <= 0 or max_rows < 1:
        raise LakeforgeError(
            f"streaming needs interval_s > 0 and max_rows >= 1 (got {interval_s}, {max_rows})"
        )
    stream = _Stream(
        ws,
        model_uri,
        input=input,
        output=output,
        keys=keys,
        keep_columns=keep_columns,
        prediction=prediction,
        features=features,
        fail_fast=fail_fast,
    )
    stop = stop or threading.Event()
    result = StreamResult(last_input_version=stream.cursor - 1 if stream.cursor else None)
    until = stream.latest() if once else None
    try:
        while not stop.is_set():
            batch = stream.next_batch(until, max_rows=max_rows)
            if batch is None:
                if once:
                    break
                stop.wait(interval_s)
                continue
            done = stream.process(batch)
            result.add(done)
            if progress is not None:
                progress(done)
    finally:
        stream.close()
    return result


@dataclass
class _Batch:
    """The input rows of one micro-batch, in version order."""

    first: int
    last: int
    rows: pa.Table  # data columns + _change_type (string) + _commit_version (int64)


class _Stream:
    """The state of one stream: its tables, checkpoint cursor and loaded models."""

    def __init__(
        self,
        ws: Workspace,
        model_uri: str,
        *,
        input: str,
        output: str,
        keys: Sequence[str] | None,
        keep_columns: bool,
        prediction: str,
        features: Features,
        fail_fast: bool,
    ) -> None:
        match = URI.fullmatch(model_uri.strip())
        if match is None:
            raise LakeforgeError(
                f"model URI {model_uri!r} is not models:/NAME/VERSION or models:/NAME@ALIAS "
                "(the models:/ prefix is optional, e.g. dev.ml.delay@champion)"
            )
        if keys and keep_columns:
            raise LakeforgeError("pass keys= (the columns to keep) or keep_columns=True, not both")
        self.ws = ws
        self.name: str = match["name"]
        self.alias: str | None = match["alias"]
        self.model = self.name + (f"@{self.alias}" if self.alias else f"/{match['version']}")
        self.input = ws.tables.name(input)
        self.sink = DeltaSink(ws, output)
        if self.sink.table == self.input:
            raise LakeforgeError(
                f"the output table {output} is the input table; score into another"
            )
        self.app_id = f"{APP_PREFIX}{self.sink.table}/{self.input}"
        self.prediction, self.features, self.fail_fast = prediction, features, fail_fast
        self._scorers: dict[str, Scorer] = {}  # by model version, the current one last
        self._input = ws.tables.delta(self.input)  # kept open: each poll reads new commits
        _check_change_feed(self._input, str(self.input))
        schema = ws.tables.schema(self.input)
        self.keep = _keep(schema, keys, keep_columns)
        first = ws.models.resolve(self.model)  # its errors name the models and aliases there
        self.full_name, self.pinned = str(first.name), str(first.version)
        scorer = self._scorer(self.pinned)  # a model that cannot load fails here
        scorer.check_input(schema)
        self.schema = _with_change_column(scorer.output_schema(schema))
        self.sink.check(self.schema)
        committed = self.sink.committed(self.app_id)
        self.cursor = 0 if committed is None else committed + 1
        self.redo = self._interrupted(committed)

    # -- models -------------------------------------------------------------------------

    def _resolve(self) -> str:
        """The model version the URI names now (an alias: one registry lookup)."""
        from mlflow.exceptions import MlflowException

        if self.alias is None:
            return self.pinned
        try:
            found = self.ws.models.client.get_model_version_by_alias(self.full_name, self.alias)
        except MlflowException:  # the alias was removed: the registry's message says so
            found = self.ws.models.resolve(self.model)
        return str(found.version)

    def _scorer(self, version: str) -> Scorer:
        """The scorer of ``version``, downloaded and loaded on first use; the two most
        recently used stay loaded (an alias moved back needs no reload)."""
        scorer = self._scorers.pop(version, None)
        if scorer is None:
            pinned = resolve_model(self.ws, f"{self.name}/{version}")
            ref: ModelRef = replace(pinned, alias=self.alias)
            scorer = Scorer(
                ref,
                keep=self.keep,
                prediction=self.prediction,
                features=self.features,
                fail_fast=self.fail_fast,
                project_dir=str(self.ws.project.directory),
                target=self.ws.target.name,
            )
            scorer.load()
        self._scorers[version] = scorer
        while len(self._scorers) > _LOADED_MODELS:
            self._scorers.pop(next(iter(self._scorers))).close()
        return scorer

    def close(self) -> None:
        for scorer in self._scorers.values():
            scorer.close()

    # -- reading ------------------------------------------------------------------------

    def latest(self) -> int:
        """The input table's latest version (its log read incrementally)."""
        self._input.update_incremental()
        return int(self._input.version())

    def _interrupted(self, committed: int | None) -> tuple[int, str | None] | None:
        """A micro-batch whose errors committed but whose output did not: its last input
        version and the model version its errors were scored with (to redo it exactly)."""
        errors = self.sink.errors_table
        if not self.ws.tables.exists(errors):
            return None
        done = self.ws.tables.delta(errors).transaction_version(self.app_id)
        if done is None or (committed is not None and done <= committed):
            return None
        where = f"input_version BETWEEN {self.cursor} AND {int(done)}"
        rows = self.ws.tables.read(errors, columns=["model_name", "model_version"], filter=where)
        versions = {
            r["model_version"] for r in rows.to_pylist() if r["model_name"] == self.full_name
        }
        log.info("%s: redoing the micro-batch up to input version %s", self.app_id, done)
        return int(done), versions.pop() if len(versions) == 1 else None

    def next_batch(self, until: int | None, *, max_rows: int) -> _Batch | None:
        """The next micro-batch (None: nothing new up to ``until`` or the latest version)."""
        end = self.latest() if until is None else until
        if self.redo is not None:
            end = self.redo[0]
        if self.cursor > end:
            return None
        if self.cursor == 0:
            try:
                first = self._changes(0)
            except LakeforgeError as exc:
                log.info("%s: %s; reading version %s as a snapshot", self.input, exc, end)
                return _Batch(0, end, self._snapshot(end))
        else:
            first = self._changes(self.cursor)
        pieces, rows, version = [first], first.num_rows, self.cursor
        while version < end and (rows < max_rows or self.redo is not None):
            version += 1
            pieces.append(self._changes(version))
            rows += pieces[-1].num_rows
        return _Batch(self.cursor, version, pa.concat_tables(pieces, promote_options="permissive"))

    def _changes(self, version: int) -> pa.Table:
        """The change data feed of one input version (update pre-images left out)."""
        try:
            feed = self._input.load_cdf(starting_version=version, ending_version=version)
            changes = pa.RecordBatchReader.from_stream(feed).read_all()
        except DeltaError as exc:
            raise LakeforgeError(
                f"the change data feed of {self.input} at version {version} cannot be read: {exc}"
            ) from None
        changes = _plain(changes.drop_columns([c for c in _CDF_EXTRA if c in changes.schema.names]))
        changes = changes.set_column(
            changes.schema.get_field_index(COMMIT_VERSION),
            COMMIT_VERSION,
            pc.cast(changes.column(COMMIT_VERSION), pa.int64()),
        )
        keep = pc.not_equal(changes.column(CDF_CHANGE_TYPE), "update_preimage")
        return changes.filter(keep)

    def _snapshot(self, version: int) -> pa.Table:
        data = _plain(self.ws.tables.read(self.input, version=version))
        n = data.num_rows
        data = data.append_column(CDF_CHANGE_TYPE, pa.repeat(pa.scalar("insert"), n))
        return data.append_column(COMMIT_VERSION, pa.repeat(pa.scalar(version, pa.int64()), n))

    # -- scoring and committing -----------------------------------------------------------

    def process(self, batch: _Batch) -> MicroBatch:
        """Score ``batch`` with the model as of now and commit it with its checkpoint."""
        pinned = self.redo[1] if self.redo is not None else None
        scorer = self._scorer(pinned or self._resolve())
        scored_at = datetime.now(UTC)
        outputs, errors, counts = [], [], {"scored": 0, "deleted": 0}
        for version, change, rows in _groups(batch.rows):
            data = rows.drop_columns([CDF_CHANGE_TYPE, COMMIT_VERSION])
            if change == DELETE:
                out = self._deletes(data, version, scored_at)
                counts["deleted"] += out.num_rows
            else:
                scored = scorer.score(data, input_version=version, scored_at=scored_at)
                out = _with_change(scored.output, change)
                errors.append(scored.errors)
                counts["scored"] += out.num_rows
            outputs.append(out)
        output = _concat(outputs, self.schema)
        failed = _concat(errors, ERRORS_SCHEMA)
        written = self.sink.commit(
            ScoredBatch(output, failed), app_id=self.app_id, version=batch.last
        )
        self.cursor, self.redo = batch.last + 1, None
        return MicroBatch(
            batch.first,
            batch.last,
            counts["scored"],
            counts["deleted"],
            failed.num_rows,
            scorer.ref.version,
            written,
        )

    def _deletes(self, rows: pa.Table, version: int, scored_at: datetime) -> pa.Table:
        """Deleted rows as output rows: kept columns, ``_change_type`` = delete, and null
        prediction and model columns (they are recorded, not scored)."""
        values = {
            CHANGE_TYPE: pa.scalar(DELETE),
            "input_version": pa.scalar(version, pa.int64()),
            "scored_at": pa.scalar(scored_at, pa.timestamp("us", tz="UTC")),
        }
        columns = []
        for target in self.schema:
            if target.name in values:
                columns.append(pa.repeat(values[target.name], rows.num_rows).cast(target.type))
            elif target.name in (self.keep or rows.column_names):
                columns.append(rows.column(target.name).cast(target.type))
            else:
                columns.append(pa.nulls(rows.num_rows, target.type))
        return pa.Table.from_arrays(columns, schema=self.schema)


def _check_change_feed(dt: DeltaTable, table: str) -> None:
    """Refuse an input table without the change data feed (streaming reads new rows from it)."""
    configuration = dt.metadata().configuration
    if str(configuration.get(_CDF_KEY, "false")).lower() != "true":
        raise LakeforgeError(
            f"cannot stream from {table}: its change data feed is off, and streaming reads "
            "the rows that arrive from it",
            hint=f"turn it on: ws.tables.delta({table!r}, write=True).alter."
            f"set_table_properties({{{_CDF_KEY!r}: 'true'}}) (tables Lakeforge creates have it)",
        )


def _keep(schema: pa.Schema, keys: Sequence[str] | None, keep_columns: bool) -> list[str] | None:
    """The input columns the output carries (None: all of them)."""
    if keep_columns:
        return None
    if keys:
        return list(keys)
    return primary_keys_of(schema) or None


def _with_change_column(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(CHANGE_TYPE, pa.string()))


def _with_change(output: pa.Table, change: str) -> pa.Table:
    n = output.num_rows
    return output.append_column(CHANGE_TYPE, pa.repeat(pa.scalar(change), n))


def _groups(rows: pa.Table) -> Iterator[tuple[int, str, pa.Table]]:
    """Runs of rows with one (commit version, change type), in version order."""
    keys = (
        rows.select([COMMIT_VERSION, CDF_CHANGE_TYPE])
        .group_by([COMMIT_VERSION, CDF_CHANGE_TYPE], use_threads=False)
        .aggregate([])
    )
    for version, change in sorted(zip(*keys.to_pydict().values(), strict=True)):
        mask = pc.and_(
            pc.equal(rows.column(COMMIT_VERSION), version),
            pc.equal(rows.column(CDF_CHANGE_TYPE), change),
        )
        yield int(version), str(change), rows.filter(mask)


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="permissive")


def _plain(table: pa.Table) -> pa.Table:
    """View types (delta-rs's change data feed reads strings as views) as plain ones."""
    plain = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}
    fields = [f.with_type(plain.get(f.type, f.type)) for f in table.schema]
    return table.cast(pa.schema(fields))
