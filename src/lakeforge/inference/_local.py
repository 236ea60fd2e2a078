"""The local engine: a process pool on this machine, the model loaded once per worker.

Units are scored in parallel and their results consumed in input order, a bounded number
in flight (memory does not grow with the input). A worker reads a whole row group itself;
slices of a larger one are read here, each row group decoded once, and sent to the
workers. Workers fork from a server that imported the model's libraries once; each loads
the model once. Each worker limits BLAS/OpenMP threads to cores / workers before the
model's libraries are imported. ``workers=1`` scores in this process, with no pool; so
does a job whose workers were chosen for it when a sample shows the pool would not pay
(a model that takes every core itself, as LightGBM does, or costs less than sending it
its rows).

This module imports nothing heavy at its top: a worker process imports it (to find its
initializer) before the thread limits are set.
"""

from __future__ import annotations

import itertools
import os
import pickle
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import TYPE_CHECKING

from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

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
_SAMPLE_ROWS = 16_384  # rows scored here to learn the model's cost per row
_SEND_COST = 2.0  # sending rows to a worker and back, relative to reading them
_POOL_START_S = 1.0  # starting the workers and loading the model in each, about
_MIN_SAVED = 1 / 3  # of the time here a pool must save (the sample's timing is noisy)
_scorer: Scorer | None = None  # the worker's own, loaded by its initializer
_limits: object = None  # threadpoolctl's limits, held for the worker's life


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_local(job: ScoreJob) -> Iterator[tuple[int, ScoredBatch]]:
    """Score ``job``'s chunks; yields ``(chunk number, scored rows)`` in chunk order."""
    from lakeforge.inference._source import UnitReader

    reader = UnitReader()
    if job.workers > 1 and job.adaptive:
        first = next(job.chunks, None)
        if first is None:
            return
        job.chunks = itertools.chain([first], job.chunks)
        if not _pool_pays(job, first.units[0], reader):
            job.workers = 1
    if job.workers <= 1:
        job.scorer.load()
        for chunk in job.chunks:
            pieces = [
                job.scorer.score(
                    reader.read(unit), input_version=job.input_version, scored_at=job.scored_at
                )
                for unit in chunk.units
            ]
            yield chunk.number, concat(pieces)
        return
    yield from _pooled(job, reader)


def _pool_pays(job: ScoreJob, unit: Unit, reader: UnitReader) -> bool:
    """Whether scoring in ``job.workers`` processes beats scoring here: a sample of
    ``unit`` is scored here, and the time the workers save (here, the model takes its own
    threads; each worker gets one core), less the cost of sending them the rows (about
    that of reading them), must be a good part of the time here and exceed the pool's
    start.
    """
    job.scorer.load()
    began = time.process_time()
    data = reader.read(unit)
    read_s = (time.process_time() - began) / max(data.num_rows, 1)
    sample = data.slice(0, _SAMPLE_ROWS)
    wall, cpu = time.perf_counter(), time.process_time()
    job.scorer.score(sample, input_version=job.input_version, scored_at=job.scored_at)
    rows = max(sample.num_rows, 1)
    wall_s, cpu_s = (time.perf_counter() - wall) / rows, (time.process_time() - cpu) / rows
    saved_s = wall_s - cpu_s / job.workers - _SEND_COST * read_s
    total = job.source.rows
    return saved_s > _MIN_SAVED * wall_s and (total is None or saved_s * total > _POOL_START_S)


def _pooled(job: ScoreJob, reader: UnitReader) -> Iterator[tuple[int, ScoredBatch]]:
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
    window: deque[tuple[Chunk, int, Future[ScoredBatch]]] = deque()
    done: list[ScoredBatch] = []
    limit = 2 * job.workers  # units in flight: each worker busy, one more queued

    def oldest() -> Iterator[tuple[int, ScoredBatch]]:
        chunk, index, future = window.popleft()
        try:
            done.append(future.result())
        except BrokenProcessPool as exc:
            raise LakeforgeError(
                f"a scoring worker process died (out of memory, or killed): {exc}"
            ) from None
        if index == len(chunk.units) - 1:
            yield chunk.number, concat(done)
            done.clear()

    try:
        for chunk in job.chunks:
            for index, unit in enumerate(chunk.units):
                shipped = reader.ship(unit)
                future = pool.submit(_score, shipped, job.input_version, job.scored_at)
                window.append((chunk, index, future))
                while len(window) >= limit:
                    yield from oldest()
        while window:
            yield from oldest()
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
