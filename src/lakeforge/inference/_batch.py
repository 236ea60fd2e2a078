"""Batch scoring: a table snapshot, SQL result or frame, scored into a table, a file or memory.

The run resolves and loads the model before reading any data, checks the input against
the model's signature and the output table's schema before scoring, then hands the
input's chunks to an engine and commits what it yields, chunk by chunk, in order.

For table input written to a Delta table, chunk ``n`` commits with the application
transaction ``(lakeforge.score/<output>/<input>@<version>/<model>/<model version>, n)``:
scoring the same input version again skips the chunks the output already holds, so a
rerun after a crash (or a repeat) completes the output with no duplicates and no gaps.

Engines are looked up by name in :data:`ENGINES` (``"name": "module:function"``,
imported on first use). An engine is a function ``(ScoreJob) -> Iterator[(chunk
number, ScoredBatch)]`` yielding each chunk of ``job.chunks`` once, in order; the
driver here commits them.
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from lakeforge.errors import LakeforgeError
from lakeforge.inference._load import ModelRef, resolve_model
from lakeforge.inference._local import concat, cores
from lakeforge.inference._model import META_COLUMNS, ScoredBatch, Scorer
from lakeforge.inference._sink import FILE_FORMATS, DeltaSink, FileSink
from lakeforge.inference._source import (
    Chunk,
    Source,
    data_source,
    sql_source,
    table_source,
)

if TYPE_CHECKING:
    import pandas as pd

    from lakeforge._workspace import Workspace

#: Engines by name: ``module:function`` taking a :class:`ScoreJob`.
ENGINES: dict[str, str] = {
    "local": "lakeforge.inference._local:run_local",
    "ray": "lakeforge.inference._ray:run_ray",
}
Engine = Callable[["ScoreJob"], Iterator[tuple[int, ScoredBatch]]]
#: Progress callback: rows of the input done so far (skipped chunks included), and the
#: input's row count when known.
Progress = Callable[[int, int | None], None]
APP_PREFIX = "lakeforge.score"
_IN_PROCESS_ROWS = 100_000  # up to this many input rows, no pool by default


@dataclass
class ScoreJob:
    """What an engine runs: a loaded-once scorer over the input's chunks."""

    scorer: Scorer  # picklable; each worker calls load() once
    chunks: Iterator[Chunk]  # in order, already committed ones left out
    workers: int
    input_version: int | None  # goes into every output row
    scored_at: datetime  # goes into every output row
    source: Source  # the input (table name and pinned version for table input)
    # workers was chosen, not given: an engine may use fewer when more would not pay
    adaptive: bool = False


@dataclass
class ScoreResult:
    """What a scoring run did."""

    model: ModelRef
    rows_in: int  # input rows covered, chunks skipped as already committed included
    rows_scored: int  # output rows this run wrote
    rows_failed: int  # rows this run sent to the errors table
    output: str | None  # table name or file path (None: returned in ``data``)
    output_version: int | None  # the output table's version afterwards
    output_versions: list[int]  # versions this run committed
    input_version: int | None  # the input table's version scored
    elapsed: float  # seconds
    chunks_skipped: int  # chunks the output already held
    errors_output: str | None = None  # where failed rows went (table or file)
    data: pa.Table | None = None  # the scored rows when output is None
    errors: pa.Table | None = field(default=None, repr=False)  # failed rows when output is None

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.elapsed if self.elapsed > 0 else 0.0


def find_engine(name: str) -> Engine:
    """The engine registered as ``name``."""
    path = ENGINES.get(name)
    if path is None:
        raise LakeforgeError(
            f"unknown scoring engine {name!r}; engines: {', '.join(sorted(ENGINES))}"
        )
    module, function = path.split(":")
    try:
        found: Engine = getattr(importlib.import_module(module), function)
    except ImportError as exc:
        raise LakeforgeError(f"scoring engine {name!r} is not available: {exc}") from None
    return found


def score(
    ws: Workspace,
    model_uri: str,
    *,
    input: str | None = None,
    input_version: int | None = None,
    sql: str | None = None,
    data: Any = None,
    output: str | None = None,
    keys: Sequence[str] | None = None,
    keep_columns: bool = False,
    prediction: str = "prediction",
    features: Literal["offline", "online"] = "offline",
    engine: str = "local",
    workers: int | None = None,
    chunk_rows: int = 1_000_000,
    fail_fast: bool = False,
    progress: Progress | None = None,
) -> ScoreResult:
    """Score ``input`` (a table, at ``input_version`` or its current one), ``sql`` (a
    read-only query) or ``data`` (rows in memory) with a registered model.

    ``output`` is a Delta table (failed rows go to ``<output>_errors``), a ``.parquet``
    or ``.csv`` file (written whole, then renamed into place), or None to return the
    scored rows. Output rows carry ``keys`` (default: the input table's primary keys,
    else every input column; ``keep_columns=True``: every input column), the prediction
    column(s), ``model_name``, ``model_version``, ``model_alias``, ``scored_at`` and
    ``input_version``. ``workers`` defaults to one per core, or one (this process) for
    small input or when the local engine measures that a pool would not pay.
    """
    started = time.perf_counter()
    _check_options(input, input_version, sql, data, keys, keep_columns, features, chunk_rows)
    if workers is not None and workers < 1:
        raise LakeforgeError(f"workers must be at least 1, got {workers}")
    run = find_engine(engine)
    ref = resolve_model(ws, model_uri)  # a model that cannot load fails before any read
    source = (
        table_source(ws, input, version=input_version, chunk_rows=chunk_rows)
        if input is not None
        else sql_source(ws, sql, chunk_rows=chunk_rows)
        if sql is not None
        else data_source(data, chunk_rows=chunk_rows)
    )
    keep = list(keys) if keys else None if keep_columns else source.primary_keys or None
    scorer = Scorer(
        ref,
        keep=keep,
        prediction=prediction,
        features=features,
        fail_fast=fail_fast,
        project_dir=str(ws.project.directory),
        target=ws.target.name,
    )
    scorer.check_input(source.schema)
    columns = scorer.needed_columns(source.schema)
    chunks: Iterator[Chunk] = (
        Chunk(c.number, [u.with_columns(columns) for u in c.units]) for c in source.chunks
    )
    output_schema = scorer.output_schema(source.schema)
    writer = _Writer.open(ws, output, source, output_schema)
    app_id = writer.app_id(source, ref)
    done = writer.committed(app_id)
    skipped = _Skipped()
    if done:
        chunks = skipped.past(chunks, done)
    chosen = workers or (
        1 if source.rows is not None and source.rows <= _IN_PROCESS_ROWS else cores()
    )
    job = ScoreJob(
        scorer,
        chunks,
        chosen,
        source.version,
        datetime.now(UTC),
        source,
        adaptive=workers is None,
    )
    try:
        with _Commits(writer, app_id, progress, skipped, source.rows) as commits:
            for number, scored in run(job):
                commits.add(number, scored)
            commits.wait()
    except BaseException:
        writer.abandon()
        raise
    finally:
        scorer.close()
    frame, errors = writer.finish(output_schema)
    return ScoreResult(
        model=ref,
        rows_in=skipped.rows + commits.rows_scored + commits.rows_failed,
        rows_scored=commits.rows_scored,
        rows_failed=commits.rows_failed,
        output=output,
        output_version=writer.version(),
        output_versions=commits.versions,
        input_version=source.version,
        elapsed=time.perf_counter() - started,
        chunks_skipped=skipped.chunks,
        errors_output=writer.errors_output(),
        data=frame,
        errors=errors,
    )


def _check_options(
    input: str | None,
    input_version: int | None,
    sql: str | None,
    data: Any,
    keys: Sequence[str] | None,
    keep_columns: bool,
    features: str,
    chunk_rows: int,
) -> None:
    named = (("input", input), ("sql", sql), ("data", data))
    given = [name for name, value in named if value is not None]
    if len(given) != 1:
        raise LakeforgeError(
            "pass exactly one input to score: input= (a table), sql= (a read-only query) or "
            f"data= (rows in memory); got {', '.join(given) or 'none'}",
            hint="on the command line: --input TABLE or --sql QUERY",
        )
    if input_version is not None and input is None:
        raise LakeforgeError("input_version= applies to a table input (input=) only")
    if keys and keep_columns:
        raise LakeforgeError("pass keys= (the columns to keep) or keep_columns=True, not both")
    if features not in ("offline", "online"):
        raise ValueError(f"features must be 'offline' or 'online', got {features!r}")
    if chunk_rows < 1:
        raise LakeforgeError(f"chunk_rows must be at least 1, got {chunk_rows}")


class _Skipped:
    """Chunks left out because the output already holds them."""

    def __init__(self) -> None:
        self.chunks = 0
        self.rows = 0

    def past(self, chunks: Iterator[Chunk], done: int) -> Iterator[Chunk]:
        for chunk in chunks:
            if chunk.number <= done:
                self.chunks += 1
                self.rows += chunk.rows
                continue
            yield chunk


class _Commits:
    """Scored chunks committed in chunk order by one thread while the engine scores the
    next chunk (two chunks' output in memory at most)."""

    def __init__(
        self,
        writer: _Writer,
        app_id: str,
        progress: Progress | None,
        skipped: _Skipped,
        total: int | None,
    ) -> None:
        self.writer, self.app_id = writer, app_id
        self.progress, self.skipped, self.total = progress, skipped, total
        self.versions: list[int] = []  # output table versions committed
        self.rows_scored = self.rows_failed = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="lakeforge-commit")
        self._pending: tuple[Future[int | None], ScoredBatch] | None = None

    def add(self, number: int, scored: ScoredBatch) -> None:
        """Commit chunk ``number`` once the chunk before it is committed."""
        self.wait()
        commit = self._thread.submit(self.writer.commit, scored, app_id=self.app_id, version=number)
        self._pending = (commit, scored)

    def wait(self) -> None:
        """Wait for the pending commit (its error, if it failed) and count its rows."""
        if self._pending is None:
            return
        commit, scored = self._pending
        self._pending = None
        version = commit.result()
        if version is not None:
            self.versions.append(version)
        self.rows_scored += scored.output.num_rows
        self.rows_failed += scored.errors.num_rows
        if self.progress is not None:
            done = self.skipped.rows + self.rows_scored + self.rows_failed
            self.progress(done, self.total)

    def __enter__(self) -> _Commits:
        return self

    def __exit__(self, *exc: object) -> None:
        """Let a commit in progress finish (it commits whole or not at all)."""
        self._thread.shutdown(wait=True)


class _Writer:
    """The output of one run: a Delta table, a file, or memory."""

    def __init__(self, ws: Workspace, output: str | None) -> None:
        self.ws = ws
        self.output = output
        self.table: DeltaSink | None = None
        self.file: FileSink | None = None
        self.kept: list[ScoredBatch] = []

    @classmethod
    def open(cls, ws: Workspace, output: str | None, source: Source, schema: pa.Schema) -> _Writer:
        """The output, checked against ``schema`` (the rows scoring will write) first."""
        writer = cls(ws, output)
        if output is None:
            return writer
        if Path(output).suffix.lower() in FILE_FORMATS:
            writer.file = FileSink(output)
            return writer
        writer.table = DeltaSink(ws, output)
        if source.version is not None and str(writer.table.table) == source.label:
            raise LakeforgeError(
                f"the output table {output} is the input table; score into another"
            )
        writer.table.check(schema)
        return writer

    def app_id(self, source: Source, ref: ModelRef) -> str:
        """The application id of this run's commits: the same for the same input version
        and model version (reruns skip what is committed), unique otherwise."""
        output = str(self.table.table) if self.table else self.output
        model = f"{ref.name}/{ref.version}"
        if source.version is not None:
            return f"{APP_PREFIX}/{output}/{source.label}@{source.version}/{model}"
        return f"{APP_PREFIX}/{output}/{source.label}-{uuid.uuid4().hex}/{model}"

    def committed(self, app_id: str) -> int | None:
        return None if self.table is None else self.table.committed(app_id)

    def commit(self, scored: ScoredBatch, *, app_id: str, version: int) -> int | None:
        if self.table is not None:
            return self.table.commit(scored, app_id=app_id, version=version)
        if self.file is not None:
            self.file.write(scored)
        else:
            self.kept.append(scored)
        return None

    def abandon(self) -> None:
        if self.file is not None:
            self.file.close(ok=False)

    def finish(self, schema: pa.Schema) -> tuple[pa.Table | None, pa.Table | None]:
        """Close the output; the scored and failed rows when they are kept in memory."""
        if self.file is not None:
            self.file.close(ok=True, schema=schema)
        if self.output is not None:
            return None, None
        if not self.kept:
            from lakeforge.inference._model import ERRORS_SCHEMA

            return schema.empty_table(), ERRORS_SCHEMA.empty_table()
        scored = concat(self.kept)
        return scored.output, scored.errors

    def errors_output(self) -> str | None:
        if self.table is not None:
            return str(self.table.errors_table)
        return None if self.file is None else str(self.file.errors_path)

    def version(self) -> int | None:
        if self.table is None or not self.ws.tables.exists(self.table.table):
            return None
        return int(self.ws.tables.delta(self.table.table).version())


def score_batch(
    ws: Workspace,
    model_uri: str,
    df: Any,
    *,
    result_column: str = "prediction",
    features: Literal["offline", "online"] = "offline",
) -> pd.DataFrame:
    """Score rows in memory (a feature-aware model looks its features up): the input with
    ``result_column`` added. Any failing row fails the call."""
    result = score(
        ws,
        model_uri,
        data=df,
        keep_columns=True,
        prediction=result_column,
        features=features,
        workers=1,
        fail_fast=True,
    )
    assert result.data is not None
    return result.data.drop_columns(list(META_COLUMNS)).to_pandas()
