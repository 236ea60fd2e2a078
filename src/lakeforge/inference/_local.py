"""The local engine: scoring in this process, or a process pool with the model loaded
once per worker.

Units are scored in input order and their results grouped back into chunks. In this
process, a thread decodes the next unit while the current one is scored. In a pool,
units are scored in parallel and consumed in input order, a bounded number in flight
(memory does not grow with the input); a worker reads a whole row group itself, slices
of a larger one are read here (each row group decoded once) and sent to the workers.
Workers fork from a server that imported the model's libraries once; each loads the
model once and limits BLAS/OpenMP threads to cores / workers before the model's
libraries are imported.

``workers=1`` scores in this process. When the workers were chosen for the job, a model
whose flavor parallelizes its own predict (LightGBM, XGBoost, CatBoost) is scored in
this process; any other has its first unit scored here, timed, and a pool takes the rest
only when that timing says it would pay (a model that costs less than sending it its
rows stays here).

This module imports nothing heavy at its top: a worker process imports it (to find its
initializer) before the thread limits are set.
"""

from __future__ import annotations

import os
import pickle
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    import pyarrow as pa

    from lakeforge.inference._batch import ScoreJob
    from lakeforge.inference._model import ScoredBatch, Scorer
    from lakeforge.inference._source import Chunk, Unit, UnitReader

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: MLflow flavors (pyfunc loader modules) whose predict uses every core by itself.
MULTITHREADED = frozenset({"mlflow.lightgbm", "mlflow.xgboost", "mlflow.catboost"})
_SEND_COST = 2.0  # sending rows to a worker and back, relative to reading them
_POOL_START_S = 1.0  # starting the workers and loading the model in each, about
_MIN_SAVED = 1 / 3  # of the time here a pool must save (one unit's timing is noisy)
_scorer: Scorer | None = None  # the worker's own, loaded by its initializer
_limits: object = None  # threadpoolctl's limits, held for the worker's life

Piece = tuple["Chunk", int, "Unit"]  # a unit, with its chunk and its place in the chunk


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_local(job: ScoreJob) -> Iterator[tuple[int, ScoredBatch]]:
    """Score ``job``'s chunks; yields ``(chunk number, scored rows)`` in chunk order."""
    from lakeforge.inference._source import UnitReader

    units: Iterator[Piece] = (
        (chunk, index, unit) for chunk in job.chunks for index, unit in enumerate(chunk.units)
    )
    done: list[ScoredBatch] = []
    for (chunk, index, _), scored in _score_units(job, units, UnitReader()):
        done.append(scored)
        if index == len(chunk.units) - 1:
            yield chunk.number, concat(done)
            done.clear()


def _score_units(
    job: ScoreJob, units: Iterator[Piece], reader: UnitReader
) -> Iterator[tuple[Piece, ScoredBatch]]:
    """Each unit scored, in input order: here, or in a pool when ``job.workers`` > 1
    (when the workers were chosen, only if the pool pays: see the module's docstring)."""
    job.scorer.load()
    if job.workers > 1 and job.adaptive:
        if getattr(job.scorer.model, "loader_module", None) in MULTITHREADED:
            job.workers = 1
        else:
            first = next(units, None)
            if first is None:
                return
            began = time.process_time()
            data = reader.read(first[2])
            read_s = time.process_time() - began
            wall, cpu = time.perf_counter(), time.process_time()
            yield first, _score_here(job, data)
            timing = _Timing(
                data.num_rows, read_s, time.perf_counter() - wall, time.process_time() - cpu
            )
            if not timing.pool_pays(job.workers, job.source.rows):
                job.workers = 1
    if job.workers <= 1:
        yield from _here(job, units, reader)
    else:
        yield from _pooled(job, units, reader)


@dataclass(frozen=True)
class _Timing:
    """One unit scored here: its rows, the CPU seconds reading it took, and the wall and
    CPU seconds scoring it took."""

    rows: int
    read_s: float
    wall_s: float
    cpu_s: float

    def pool_pays(self, workers: int, total: int | None) -> bool:
        """Whether ``workers`` processes beat scoring here: the time they save (here, the
        model takes its own threads; each worker gets one core), less the cost of sending
        them the rows (about that of reading them), must be a good part of the time here
        and exceed the pool's start over the ``total`` rows (None: unknown)."""
        rows = max(self.rows, 1)
        wall, cpu, read = self.wall_s / rows, self.cpu_s / rows, self.read_s / rows
        saved = wall - cpu / workers - _SEND_COST * read
        return saved > _MIN_SAVED * wall and (total is None or saved * total > _POOL_START_S)


def _score_here(job: ScoreJob, data: pa.Table) -> ScoredBatch:
    return job.scorer.score(data, input_version=job.input_version, scored_at=job.scored_at)


def _here(
    job: ScoreJob, units: Iterator[Piece], reader: UnitReader
) -> Iterator[tuple[Piece, ScoredBatch]]:
    """Score in this process, a thread decoding the next unit meanwhile (Parquet decoding
    releases the GIL)."""
    with ThreadPoolExecutor(1, thread_name_prefix="lakeforge-read") as ahead:
        pending: tuple[Piece, Future[pa.Table]] | None = None
        for piece in units:
            reading = ahead.submit(reader.read, piece[2])
            if pending is not None:
                yield pending[0], _score_here(job, pending[1].result())
            pending = (piece, reading)
        if pending is not None:
            yield pending[0], _score_here(job, pending[1].result())


def _pooled(
    job: ScoreJob, units: Iterator[Piece], reader: UnitReader
) -> Iterator[tuple[Piece, ScoredBatch]]:
    import multiprocessing

    context: BaseContext
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that imported MLflow once (seconds saved per worker
        # and per run); their thread limits then come from threadpoolctl.
        from lakeforge.inference._load import preload_modules

        context.set_forkserver_preload(preload_modules(job.scorer.ref))
    else:  # pragma: no cover - not Linux
        context = multiprocessing.get_context("spawn")
    threads = max(1, cores() // job.workers)
    pool = ProcessPoolExecutor(
        job.workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(threads, pickle.dumps(job.scorer)),
    )
    window: deque[tuple[Piece, Future[ScoredBatch]]] = deque()
    limit = 2 * job.workers  # units in flight: each worker busy, one more queued

    def oldest() -> tuple[Piece, ScoredBatch]:
        piece, future = window.popleft()
        try:
            return piece, future.result()
        except BrokenProcessPool as exc:
            raise LakeforgeError(
                f"a scoring worker process died (out of memory, or killed): {exc}"
            ) from None

    try:
        for piece in units:
            shipped = reader.ship(piece[2])
            window.append((piece, pool.submit(_score, shipped, job.input_version, job.scored_at)))
            while len(window) >= limit:
                yield oldest()
        while window:
            yield oldest()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _start_worker(threads: int, scorer: bytes) -> None:
    """Limit native threads, then build this worker's scorer and load its model once.

    The environment covers libraries imported from here on; threadpoolctl (installed
    with scikit-learn) also limits those the parent's ``__main__`` imported already.
    """
    global _scorer, _limits
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    _scorer = pickle.loads(scorer)
    assert _scorer is not None
    _scorer.load()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn (with MLflow) brings it
        return
    _limits = threadpool_limits(threads)


def _score(unit: Unit, input_version: int | None, scored_at: datetime) -> ScoredBatch:
    assert _scorer is not None, "the worker's initializer did not run"
    return _scorer.score(unit.read(), input_version=input_version, scored_at=scored_at)


def concat(pieces: list[ScoredBatch]) -> ScoredBatch:
    """The scored pieces of one chunk as one batch (in order)."""
    import pyarrow as pa

    from lakeforge.inference._model import ScoredBatch

    if len(pieces) == 1:
        return pieces[0]
    return ScoredBatch(
        pa.concat_tables([p.output for p in pieces], promote_options="permissive"),
        pa.concat_tables([p.errors for p in pieces]),
    )
