"""The Ray engine: the local engine's results, chunks and transaction ids, on a local Ray.

One Ray is started for the module (the engine uses a Ray already running in the
process); every run starts its own actor pool.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakeforge import Workspace
from lakeforge.errors import LakeforgeError
from tests.inference.conftest import INPUT

pytestmark = pytest.mark.slow

PARTS = "dev.silver.flights_parts"  # the input in 4 files (4 units) of 500 rows
CHUNK_ROWS = 1000  # two units, so two chunks


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def parts(sws: Workspace) -> str:
    if not sws.tables.exists(PARTS):
        data = sws.tables.read(INPUT)
        for start in range(0, data.num_rows, 500):
            sws.tables.write(PARTS, data.slice(start, 500), mode="append", primary_keys=["id"])
    return PARTS


def _rows(ws: Workspace, table: str) -> pa.Table:
    """A table's rows by id (or row text) without the run's timestamp."""
    data = ws.tables.read(table)
    data = data.drop_columns([c for c in ("scored_at",) if c in data.column_names])
    return data.sort_by("id" if "id" in data.column_names else "row")


def test_ray_scores_like_the_local_engine(sws: Workspace, parts: str, local_ray: None) -> None:
    # ml.pipe fails on the cancelled flights (null dep_time): both outputs and errors compare
    common = {"input": parts, "chunk_rows": CHUNK_ROWS}
    local = sws.score("ml.pipe@champion", output="dev.gold.pipe_local", workers=1, **common)
    # two actors: units may finish out of order, chunks must still commit in order
    ray = sws.score(
        "ml.pipe@champion", output="dev.gold.pipe_ray", engine="ray", workers=2, **common
    )

    assert ray.rows_in == 2000 and ray.rows_failed >= 50  # at least the 50 cancelled flights
    assert (ray.rows_scored, ray.rows_failed) == (local.rows_scored, local.rows_failed)
    assert len(ray.output_versions) == 2  # one commit per chunk
    assert _rows(sws, "dev.gold.pipe_ray").equals(_rows(sws, "dev.gold.pipe_local"))
    assert _rows(sws, "dev.gold.pipe_ray_errors").equals(_rows(sws, "dev.gold.pipe_local_errors"))
    scored = sws.tables.read("dev.gold.pipe_ray")
    assert set(scored.column("model_version").to_pylist()) == {"1"}
    assert set(scored.column("model_alias").to_pylist()) == {"champion"}
    assert set(scored.column("input_version").to_pylist()) == {3}  # 4 appends: versions 0..3


def test_ray_rerun_and_resume_share_the_local_engines_chunks(
    sws: Workspace, parts: str, local_ray: None
) -> None:
    output = "dev.gold.resumed"
    common = {"input": parts, "output": output, "chunk_rows": CHUNK_ROWS, "workers": 1}

    def crash_after_first_chunk(done: int, total: int | None) -> None:
        raise KeyboardInterrupt("killed after chunk 1")

    with pytest.raises(KeyboardInterrupt):
        sws.score("ml.delay@champion", progress=crash_after_first_chunk, **common)
    assert sws.tables.read(output).num_rows == 1000  # chunk 1 only, committed by the local engine

    resumed = sws.score("ml.delay@champion", engine="ray", **common)
    assert (resumed.chunks_skipped, resumed.rows_scored) == (1, 1000)
    again = sws.score("ml.delay@champion", engine="ray", **common)
    assert (again.chunks_skipped, again.rows_scored, again.output_versions) == (2, 0, [])

    ids = sws.tables.read(output).column("id")
    assert len(ids) == 2000 and pc.count_distinct(ids).as_py() == 2000  # no gap, no duplicate
    reference = sws.score("ml.delay@champion", input=parts, chunk_rows=CHUNK_ROWS)
    assert reference.data is not None
    assert _rows(sws, output).equals(reference.data.drop_columns(["scored_at"]).sort_by("id"))


def test_ray_failures_surface_as_lakeforge_errors(
    sws: Workspace, parts: str, local_ray: None
) -> None:
    with pytest.raises(LakeforgeError, match=r"fail_fast.*(NaN|nan|missing values)"):
        sws.score(
            "ml.pipe@champion",
            input=parts,
            output="dev.gold.pipe_fast",
            engine="ray",
            chunk_rows=CHUNK_ROWS,
            fail_fast=True,
        )
    assert not sws.tables.exists("dev.gold.pipe_fast")
