"""The Ray engine (``--engine ray``): the same scoring job on Ray Data.

What is distributed and what goes through the driver:

- **Planning** (driver): the input's chunks are the local engine's, from Lakeforge's own
  snapshot listing (the pinned version's files and row groups, :mod:`._source`), so
  chunk ``n`` holds the same rows whichever engine scores it and a run of one engine can
  be resumed by the other.
- **Reading and scoring** (actors): a Ray Data dataset of the chunks' units goes through
  ``map_batches`` with a pool of ``job.workers`` actors; each actor builds its
  :class:`Scorer` and loads the model once, then reads its units (a Parquet file's row
  groups, straight from storage) and scores them. Units the driver read itself (SQL
  results, in-memory data, partitioned or remote snapshots) are sent to the actors
  through Ray's object store.
- **Writing** (driver): scored units come back in input order (Ray Data's
  ``preserve_order``) as Arrow IPC bytes; each chunk, once whole, is yielded to the
  batch driver, which commits it with its application transaction, chunk by chunk.

Ray is started here (``ray.init`` with this machine's cores, no dashboard, worker logs
not forwarded) and shut down afterwards, unless it is already running in this process;
with ``RAY_ADDRESS`` set the job connects to that cluster instead. Its workers must
import ``lakeforge`` and read the table's files and the model's folder at the paths the
driver sees (shared storage).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lakeforge.errors import LakeforgeError
from lakeforge.inference._local import concat, cores
from lakeforge.inference._model import ScoredBatch

if TYPE_CHECKING:
    from lakeforge.inference._batch import ScoreJob
    from lakeforge.inference._model import Scorer

#: The columns of the dataset the actors read (one row per unit) and of what they return.
_UNIT_COLUMNS = ("chunk", "index", "last", "unit")


def run_ray(job: ScoreJob) -> Iterator[tuple[int, ScoredBatch]]:
    """Score ``job``'s chunks on Ray; yields ``(chunk number, scored rows)`` in chunk order."""
    units = _unit_rows(job)
    if not units["chunk"]:
        return
    with _ray_session():
        import ray
        import ray.data

        table = pa.table(units)
        # one block per unit: each is a task of its own, spread over the actors
        dataset = ray.data.from_arrow([table.slice(i, 1) for i in range(table.num_rows)])
        context = dataset.context  # this dataset's own copy
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        scored = dataset.map_batches(
            _ScoreActor,
            fn_constructor_kwargs={
                "scorer": pickle.dumps(job.scorer),
                "input_version": job.input_version,
                "scored_at": job.scored_at,
            },
            batch_size=1,
            batch_format="pyarrow",
            concurrency=job.workers,
            num_cpus=_cpus_per_actor(ray.nodes(), job.workers),  # type: ignore[no-untyped-call]
            zero_copy_batch=True,
        )
        try:
            yield from _chunks(scored.iter_batches(batch_size=None, batch_format="pyarrow"))
        except ray.exceptions.RayError as exc:
            raise _unwrapped(exc) from None


def _unit_rows(job: ScoreJob) -> dict[str, list[Any]]:
    """One row per unit of every chunk, in order: the unit pickled (a file unit is a path
    and row groups; a data unit carries its rows)."""
    rows: dict[str, list[Any]] = {name: [] for name in _UNIT_COLUMNS}
    for chunk in job.chunks:
        for index, unit in enumerate(chunk.units):
            rows["chunk"].append(chunk.number)
            rows["index"].append(index)
            rows["last"].append(index == len(chunk.units) - 1)
            rows["unit"].append(pickle.dumps(unit))
    return rows


def _chunks(batches: Iterable[pa.Table]) -> Iterator[tuple[int, ScoredBatch]]:
    """Scored units (in input order) gathered into whole chunks."""
    pieces: list[ScoredBatch] = []
    expected: tuple[int, int] | None = None
    for batch in batches:
        for row in batch.to_pylist():
            place = (row["chunk"], row["index"])
            if expected is not None and place != expected:
                raise LakeforgeError(
                    f"the Ray engine returned unit {place} out of order (expected {expected}); "
                    "nothing past the last committed chunk was written"
                )
            if row["failure"] is not None:
                raise LakeforgeError(row["failure"])
            pieces.append(ScoredBatch(_from_ipc(row["output"]), _from_ipc(row["errors"])))
            if row["last"]:
                yield row["chunk"], concat(pieces)
                pieces = []
                expected = (row["chunk"] + 1, 0)
            else:
                expected = (row["chunk"], row["index"] + 1)
    if pieces:
        raise LakeforgeError("the Ray engine stopped in the middle of a chunk")


class _ScoreActor:
    """A Ray Data actor: loads the model once, then reads and scores one unit per call."""

    def __init__(self, scorer: bytes, input_version: int | None, scored_at: datetime) -> None:
        self.scorer: Scorer = pickle.loads(scorer)
        self.scorer.load()
        self.input_version = input_version
        self.scored_at = scored_at

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Score each unit of ``batch``: its output and errors as IPC bytes, or the
        :class:`LakeforgeError` that stopped it (Ray would lose its type on the way)."""
        outputs: list[bytes | None] = []
        errors: list[bytes | None] = []
        failures: list[str | None] = []
        for blob in batch.column("unit").to_pylist():
            unit = pickle.loads(blob)
            try:
                scored = self.scorer.score(
                    unit.read(), input_version=self.input_version, scored_at=self.scored_at
                )
            except LakeforgeError as exc:
                outputs.append(None)
                errors.append(None)
                failures.append(str(exc))
                continue
            outputs.append(_to_ipc(scored.output))
            errors.append(_to_ipc(scored.errors))
            failures.append(None)
        return (
            batch.drop_columns(["unit"])
            .append_column("output", pa.array(outputs, pa.large_binary()))
            .append_column("errors", pa.array(errors, pa.large_binary()))
            .append_column("failure", pa.array(failures, pa.string()))
        )

    def __del__(self) -> None:
        self.scorer.close()


def _unwrapped(exc: BaseException) -> LakeforgeError:
    """Ray's failure (an actor died, a worker could not start) as a LakeforgeError."""
    first = next(iter(str(exc).strip().splitlines()), "")
    return LakeforgeError(f"the Ray engine failed: {type(exc).__name__}: {first}")


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _from_ipc(blob: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(blob)).read_all()


def _cpus_per_actor(nodes: list[dict[str, Any]], workers: int) -> int:
    """The cores each of ``workers`` actors reserves: the cluster's share, at most one
    node's (Ray limits each actor's native threads to these)."""
    sizes = [int(n["Resources"].get("CPU", 0)) for n in nodes if n.get("Alive")]
    total, largest = sum(sizes), max(sizes, default=1)
    return max(1, min(total // workers, largest))


@contextmanager
def _ray_session() -> Iterator[None]:
    """Ray for this job: already running in this process, the cluster ``RAY_ADDRESS``
    names, or a local one started here (and stopped afterwards)."""
    try:
        import ray
    except ImportError:
        raise LakeforgeError(
            "the Ray engine needs Ray: pip install 'lakeforge[ray]' (or use --engine local)"
        ) from None
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS")
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False)
    except Exception as exc:
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
        raise LakeforgeError(f"could not start {where}: {type(exc).__name__}: {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()
