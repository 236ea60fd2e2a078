"""Batch scoring end to end: table, SQL and in-memory input; table, file and memory output."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lakeforge import Workspace
from lakeforge.errors import LakeforgeError
from lakeforge.inference import ENGINES, ScoreJob, score
from tests.inference.conftest import FEATURES, INPUT, INPUT_ROWS, NUMBERS

META = ["model_name", "model_version", "model_alias", "scored_at", "input_version"]


def nulls(ws: Workspace) -> int:
    return int(pc.sum(pc.is_null(ws.tables.read(INPUT).column("dep_time"))).as_py())


def test_a_table_scored_into_a_table_keeps_its_primary_keys(sws: Workspace) -> None:
    result = sws.score(
        "ml.pipe@champion", input=INPUT, output="dev.gold.pipe_scores", chunk_rows=700
    )
    failed = nulls(sws)
    assert (result.rows_in, result.rows_scored, result.rows_failed) == (
        INPUT_ROWS,
        INPUT_ROWS - failed,
        failed,
    )
    assert result.input_version == 0 and result.chunks_skipped == 0
    assert len(result.output_versions) == 3  # 3 chunks of <= 700 rows
    out = sws.tables.read("dev.gold.pipe_scores")
    assert out.column_names == ["id", "prediction", *META]
    errors = sws.tables.read("dev.gold.pipe_scores_errors")
    ids = out.column("id").to_pylist() + [json.loads(r)["id"] for r in errors["row"].to_pylist()]
    assert sorted(ids) == list(range(INPUT_ROWS))
    assert set(errors.column("input_version").to_pylist()) == {0}
    assert result.output_version == sws.tables.delta("dev.gold.pipe_scores").version()


def test_scoring_the_same_input_version_again_changes_nothing(sws: Workspace) -> None:
    first = sws.score("ml.delay/1", input=INPUT, output="dev.gold.twice", chunk_rows=500)
    before = sws.tables.delta("dev.gold.twice").version()
    again = sws.score("ml.delay/1", input=INPUT, output="dev.gold.twice", chunk_rows=500)
    assert again.chunks_skipped == 4 and again.rows_scored == 0 and again.output_versions == []
    assert sws.tables.delta("dev.gold.twice").version() == before
    assert sws.tables.read("dev.gold.twice").num_rows == first.rows_scored == INPUT_ROWS


def test_process_pool_equals_in_process(sws: Workspace) -> None:
    one = sws.score("ml.double@champion", input=NUMBERS, workers=1, chunk_rows=300)
    two = sws.score("ml.double@champion", input=NUMBERS, workers=2, chunk_rows=300)
    assert one.data is not None and two.data is not None
    assert one.data.drop_columns(["scored_at"]).equals(two.data.drop_columns(["scored_at"]))
    assert one.data.column("id").to_pylist() == list(range(1000))
    assert one.data.column("prediction").to_pylist()[:3] == [0.0, 2.0, 4.0]


@pytest.mark.parametrize(("slow_s", "pooled"), [("0", False), ("0.2", True)])
def test_default_workers_pool_only_a_model_costlier_than_sending_its_rows(
    sws: Workspace, monkeypatch: pytest.MonkeyPatch, slow_s: str, pooled: bool
) -> None:
    from lakeforge.inference import _batch, _local

    used: list[int] = []
    real = _local._pooled

    def watched(job: ScoreJob, units: Any, reader: Any) -> Iterator[Any]:
        used.append(job.workers)
        return real(job, units, reader)

    monkeypatch.setattr(_local, "_pooled", watched)
    monkeypatch.setattr(_batch, "_IN_PROCESS_ROWS", 0)  # 1,000 rows: no pool by default
    monkeypatch.setattr(_batch, "cores", lambda: 2)
    monkeypatch.setattr(_local, "_POOL_START_S", 0.0)
    if not pooled:  # the cheap model: sending rows costs more than it saves
        monkeypatch.setattr(_local, "_SEND_COST", 1e9)
    monkeypatch.setenv("LF_TEST_SLOW_S", slow_s)
    result = sws.score("ml.double@champion", input=NUMBERS, chunk_rows=300)
    assert used == ([2] if pooled else [])
    assert result.data is not None and result.data.column("id").to_pylist() == list(range(1000))
    assert result.data.column("prediction").to_pylist()[:3] == [0.0, 2.0, 4.0]


def test_default_workers_score_a_self_parallel_flavor_here_without_timing_it(
    sws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LightGBM parallelizes its own predict: no pool, and no unit scored to decide."""
    from lakeforge.inference import _batch, _local

    def refuse(*args: Any) -> None:
        raise AssertionError("a LightGBM model was timed or pooled")

    monkeypatch.setattr(_local, "_pooled", refuse)
    monkeypatch.setattr(_local._Timing, "pool_pays", refuse)
    monkeypatch.setattr(_batch, "_IN_PROCESS_ROWS", 0)
    monkeypatch.setattr(_batch, "cores", lambda: 2)
    result = sws.score("ml.delay@champion", input=INPUT, chunk_rows=300)
    assert result.data is not None and result.rows_scored == INPUT_ROWS
    assert result.data.column("id").to_pylist() == list(range(INPUT_ROWS))  # input order


def test_sql_and_in_memory_input_and_file_output(sws: Workspace, tmp_path: Path) -> None:
    query = f"SELECT id, {', '.join(FEATURES)} FROM {INPUT} WHERE dep_time IS NOT NULL"
    result = sws.score("ml.pipe/1", sql=query, output=str(tmp_path / "out.parquet"), keys=["id"])
    written = pq.read_table(tmp_path / "out.parquet")
    assert written.num_rows == result.rows_scored == INPUT_ROWS - nulls(sws)
    assert set(written.column("input_version").to_pylist()) == {None}
    assert not (tmp_path / "out_errors.parquet").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no temporary left
    frame = sws.tables.read(INPUT).drop_columns(["time_hour"]).slice(0, 200).to_pandas()
    csv = sws.score("ml.pipe/1", data=frame, output=str(tmp_path / "out.csv"), keys=["id"])
    read = pacsv.read_csv(tmp_path / "out.csv")
    assert read.num_rows == csv.rows_scored and csv.rows_scored + csv.rows_failed == 200
    assert pacsv.read_csv(tmp_path / "out_errors.csv").num_rows == csv.rows_failed


def test_score_batch_returns_the_input_with_predictions(sws: Workspace) -> None:
    rows = sws.tables.read(INPUT, filter="dep_time IS NOT NULL").drop_columns(["time_hour"])
    frame = rows.slice(0, 50).to_pandas()
    scored = sws.score_batch("models:/ml.pipe/1", frame, result_column="p")
    assert list(scored.columns) == [*frame.columns, "p"]
    assert scored["id"].tolist() == frame["id"].tolist()


def test_bad_input_fails_before_scoring(sws: Workspace) -> None:
    with pytest.raises(LakeforgeError, match="exactly one input"):
        score(sws, "ml.delay/1", input=INPUT, sql="SELECT 1")
    with pytest.raises(LakeforgeError, match="got none"):
        score(sws, "ml.delay/1")
    with pytest.raises(LakeforgeError, match="unknown scoring engine 'spark'; engines: local, ray"):
        score(sws, "ml.delay/1", input=INPUT, engine="spark")
    assert set(ENGINES) >= {"local", "ray"}
    with pytest.raises(LakeforgeError, match="cannot load: RuntimeError: the weights file"):
        score(sws, "ml.broken/1", input="dev.silver.no_such_table")  # model first, no read
    with pytest.raises(LakeforgeError, match=r"Model is missing inputs \['x'\]"):
        score(sws, "ml.double/1", input=INPUT, output="dev.gold.never")
    assert not sws.tables.exists("dev.gold.never")
    sws.tables.write("dev.gold.taken", pa.table({"id": [1], "prediction": ["text"]}))
    with pytest.raises(LakeforgeError, match="refused before scoring(.|\n)*column prediction"):
        score(sws, "ml.delay/1", input=INPUT, output="dev.gold.taken")
    assert sws.tables.read("dev.gold.taken").num_rows == 1


def test_fail_fast_fails_and_writes_nothing(sws: Workspace) -> None:
    with pytest.raises(LakeforgeError, match="fail_fast.*NaN"):
        sws.score("ml.pipe/1", input=INPUT, output="dev.gold.strict", fail_fast=True)
    assert not sws.tables.exists("dev.gold.strict")


@pytest.mark.slow
def test_the_score_task_runs_as_a_job(sws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakeforge.jobs import JobRunner

    monkeypatch.setenv("PYTHONPATH", str(Path.cwd()))  # the task process unpickles the model
    run = JobRunner(sws).run("score_flights")
    assert run is not None and run.status == "succeeded", run
    values = run.tasks["score"].values
    assert values["rows_scored"] == 1000 and values["model_version"] == "1"
    assert values["input_version"] == 0 and values["chunks_skipped"] == 0
    again = sws.score("ml.double@champion", input=NUMBERS, output="dev.gold.job_scores")
    assert again.chunks_skipped == 1 and again.rows_scored == 0  # the same transaction id
    assert sws.tables.read("dev.gold.job_scores").num_rows == 1000


def test_workspace_score_mirrors_inference_score() -> None:
    from lakeforge.inference import score as target
    from tests.test_workspace_facade import _assert_same, _hints

    _assert_same(Workspace.score, target)
    assert _hints(Workspace.score)["return"] == _hints(target)["return"]
