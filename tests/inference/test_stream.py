"""Streaming scoring: only what arrived since the checkpoint, deletes recorded, the alias
resolved once per micro-batch, exactly-once output across kill -9 and restarts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from mlflow.pyfunc import PythonModel

from lakeforge import Workspace
from lakeforge.errors import LakeforgeError
from lakeforge.inference import MicroBatch, run_stream

#: Called by :class:`Times` on every predict (in-process tests only).
ON_PREDICT: list[Callable[[], None]] = []


class Times(PythonModel):
    """``x * factor`` (raising on ``x == -1``); each call runs the ``ON_PREDICT`` hooks first."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    # No type hints: MLflow would read them as the input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        for hook in list(ON_PREDICT):
            hook()
        if (model_input["x"] == -1).any():
            raise ValueError("x = -1 is out of the model's domain")
        return model_input["x"] * self.factor


@pytest.fixture(scope="module")
def times(scoring_project: Path) -> str:
    """``ml.times``: v1 = x * 2, v2 = x * 3; champion -> v1. Returns the model URI."""
    import pandas as pd

    import lakeforge

    with lakeforge.connect("dev", project_dir=scoring_project) as ws:
        with ws.start_run("train", autolog=False):
            for factor in (2.0, 3.0):
                ws.log_model(Times(factor), "ml.times", input_example=pd.DataFrame({"x": [1.0]}))
        ws.models.set_alias("ml.times", "champion", 1)
    return "models:/ml.times@champion"


@pytest.fixture
def names(sws: Workspace) -> Iterator[tuple[str, str]]:
    """A fresh (input, output) table pair for one test."""
    tag = uuid.uuid4().hex[:8]
    yield f"dev.stream.in_{tag}", f"dev.stream.out_{tag}"
    ON_PREDICT.clear()


def rows(ids: list[int], xs: list[float | None]) -> pa.Table:
    return pa.table({"id": pa.array(ids, pa.int64()), "x": pa.array(xs, pa.float64())})


def app_version(ws: Workspace, output: str, input: str) -> int | None:
    app = f"lakeforge.stream/{ws.tables.name(output)}/{ws.tables.name(input)}"
    return ws.tables.delta(output).transaction_version(app)


def test_scores_inserts_and_updates_records_deletes_and_resumes_from_the_checkpoint(
    sws: Workspace, names: tuple[str, str]
) -> None:
    source, target = names
    sws.tables.write(source, rows([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), primary_keys=["id"])
    sws.tables.write(source, rows([6, 7, 8, 0], [6, -1, 8, -1]))  # x = -1: the model raises
    sws.tables.merge(source, rows([1, 9], [10, 9]))  # update id 1, insert id 9
    sws.tables.delete(source, "id = 2")
    batches: list[MicroBatch] = []

    result = run_stream(
        sws,
        "models:/ml.double@champion",
        input=source,
        output=target,
        once=True,
        max_rows=4,
        progress=batches.append,
    )

    # whole versions, up to ~4 rows each: v0 (5 rows), v1 (4), v2 + v3 (2 + 1)
    assert [(b.first_version, b.last_version) for b in batches] == [(0, 0), (1, 1), (2, 3)]
    assert (result.micro_batches, result.rows_scored, result.rows_deleted) == (3, 9, 1)
    assert (result.rows_failed, result.last_input_version, result.model_versions) == (2, 3, ["1"])
    out = sws.tables.read(target).sort_by([("input_version", "ascending"), ("id", "ascending")])
    got = list(
        zip(
            out.column("id").to_pylist(),
            out.column("prediction").to_pylist(),
            out.column("change_type").to_pylist(),
            out.column("input_version").to_pylist(),
            strict=True,
        )
    )
    assert got == [
        (1, 2.0, "insert", 0),
        (2, 4.0, "insert", 0),
        (3, 6.0, "insert", 0),
        (4, 8.0, "insert", 0),
        (5, 10.0, "insert", 0),
        (6, 12.0, "insert", 1),
        (8, 16.0, "insert", 1),
        (1, 20.0, "update_postimage", 2),
        (9, 18.0, "insert", 2),
        (2, None, "delete", 3),
    ]
    assert out.column_names == [
        "id",
        "prediction",
        "model_name",
        "model_version",
        "model_alias",
        "scored_at",
        "input_version",
        "change_type",
    ]
    assert out.column("model_name").to_pylist() == ["dev.ml.double"] * 9 + [None]
    errors = sws.tables.read(target + "_errors").sort_by("row")
    assert errors.column("row").to_pylist() == ['{"id": 0, "x": -1.0}', '{"id": 7, "x": -1.0}']
    assert errors.column("input_version").to_pylist() == [1, 1]
    assert "out of the model's domain" in errors.column("error")[1].as_py()
    assert app_version(sws, target, source) == 3

    # nothing new: nothing scored, nothing committed
    before = sws.tables.delta(target).version()
    again = run_stream(sws, "ml.double@champion", input=source, output=target, once=True)
    assert (again.micro_batches, again.last_input_version) == (0, 3)
    assert sws.tables.delta(target).version() == before

    # only what arrived since the checkpoint
    sws.tables.write(source, rows([10, 11], [10, 11]))
    more = run_stream(sws, "ml.double@champion", input=source, output=target, once=True)
    assert (more.micro_batches, more.rows_scored, more.last_input_version) == (1, 2, 4)
    latest = sws.tables.read(target, filter="input_version = 4")
    assert sorted(latest.column("id").to_pylist()) == [10, 11]
    assert sws.tables.read(target).num_rows == 12


def test_the_alias_is_resolved_once_per_micro_batch(
    sws: Workspace, names: tuple[str, str], times: str
) -> None:
    source, target = names
    sws.tables.write(source, rows([1, 2], [1, 2]), primary_keys=["id"])
    sws.tables.merge(source, rows([1, 3], [5, 3]))  # two groups: an update and an insert
    sws.tables.write(source, rows([4], [4]))
    moves = iter([2, 1])

    def move(version: int) -> None:
        sws.models.set_alias("ml.times", "champion", version)

    def between(batch: MicroBatch) -> None:
        if batch.last_version == 0:  # between micro-batches 1 and 2: champion -> v2
            move(next(moves))
            ON_PREDICT.append(during)

    def during() -> None:  # on the first predict of micro-batch 2: champion -> v1 again
        ON_PREDICT.clear()
        move(next(moves))

    try:
        result = run_stream(
            sws, times, input=source, output=target, once=True, max_rows=1, progress=between
        )
    finally:
        move(1)
    assert result.model_versions == ["1", "2"]
    out = sws.tables.read(target)
    xs = {(1, 1): 5.0}  # (id, input version) -> x, where x is not the id
    by_version: dict[int, set[tuple[str, float]]] = {}
    for row in out.to_pylist():
        factor = row["prediction"] / xs.get((row["id"], row["input_version"]), row["id"])
        by_version.setdefault(row["input_version"], set()).add((row["model_version"], factor))
    # v2 (x * 3) for the whole micro-batch it started with, though champion moved mid-way
    assert by_version == {0: {("1", 2.0)}, 1: {("2", 3.0)}, 2: {("1", 2.0)}}
    assert set(out.column("model_alias").to_pylist()) == {"champion"}
    # one model version per output commit (the output's own change data feed reads)
    commits = sws.tables.changes(target).select(["_commit_version", "model_version"])
    per_commit: dict[int, set[str]] = {}
    for change in commits.to_pylist():
        per_commit.setdefault(change["_commit_version"], set()).add(change["model_version"])
    assert sorted(map(len, per_commit.values())) == [1, 1, 1]


def test_a_micro_batch_cut_short_after_its_errors_commit_is_redone_with_its_model(
    sws: Workspace, names: tuple[str, str], times: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakeforge.lakehouse import Lakehouse

    source, target = names
    sws.tables.write(source, rows([1, 2, 3], [1, -1, 3]), primary_keys=["id"])
    write = Lakehouse.write

    def crash_after_errors(
        self: Lakehouse, name: object, data: object, **options: object
    ) -> object:
        result = write(self, name, data, **options)  # type: ignore[arg-type]
        if str(name).endswith("_errors"):
            raise RuntimeError("crashed between the errors and the output commit")
        return result

    monkeypatch.setattr(Lakehouse, "write", crash_after_errors)
    with pytest.raises(RuntimeError, match="crashed"):
        run_stream(sws, times, input=source, output=target, once=True)
    monkeypatch.undo()
    assert not sws.tables.exists(target)
    sws.models.set_alias("ml.times", "champion", 2)
    try:
        sws.tables.write(source, rows([4], [4]))
        result = run_stream(sws, times, input=source, output=target, once=True)
    finally:
        sws.models.set_alias("ml.times", "champion", 1)
    # version 0 again with v1 (its errors' model), alone; then version 1 with v2
    assert (result.micro_batches, result.model_versions) == (2, ["1", "2"])
    out = sws.tables.read(target).sort_by("id").to_pylist()
    assert [(r["id"], r["prediction"], r["model_version"]) for r in out] == [
        (1, 2.0, "1"),
        (3, 6.0, "1"),
        (4, 12.0, "2"),
    ]
    assert sws.tables.read(target + "_errors").column("row").to_pylist() == ['{"id": 2, "x": -1.0}']


def test_a_table_whose_feed_starts_later_is_read_as_a_snapshot_first(
    sws: Workspace, names: tuple[str, str]
) -> None:
    source, target = names
    sws.tables.create(source, rows([], []).schema, change_data_feed=False)
    sws.tables.write(source, rows([1, 2], [1, 2]))
    with pytest.raises(LakeforgeError, match="change data feed is off") as info:
        run_stream(sws, "ml.double@champion", input=source, output=target, once=True)
    assert "enableChangeDataFeed" in str(info.value.hint)
    assert not sws.tables.exists(target)

    sws.tables.delta(source, write=True).alter.set_table_properties(
        {"delta.enableChangeDataFeed": "true"}
    )  # version 2
    sws.tables.write(source, rows([3], [3]))  # version 3
    first = run_stream(sws, "ml.double@champion", input=source, output=target, once=True)
    assert (first.micro_batches, first.rows_scored, first.last_input_version) == (1, 3, 3)
    out = sws.tables.read(target)
    assert set(out.column("input_version").to_pylist()) == {3}  # the snapshot's version

    sws.tables.write(source, rows([4], [4]))
    then = run_stream(sws, "ml.double@champion", input=source, output=target, once=True)
    assert (then.rows_scored, then.last_input_version) == (1, 4)
    assert sorted(sws.tables.read(target).column("id").to_pylist()) == [1, 2, 3, 4]


def test_keep_columns_keeps_every_input_column_for_scored_and_deleted_rows(
    sws: Workspace, names: tuple[str, str]
) -> None:
    source, target = names
    sws.tables.write(source, rows([1, 2], [1, 2]).append_column("tag", pa.array(["a", "b"])))
    sws.tables.delete(source, "id = 1")
    run_stream(sws, "ml.double/1", input=source, output=target, once=True, keep_columns=True)
    out = sws.tables.read(target).sort_by([("input_version", "ascending"), ("id", "ascending")])
    assert [
        (r["id"], r["x"], r["tag"], r["prediction"], r["change_type"]) for r in out.to_pylist()
    ] == [
        (1, 1.0, "a", 2.0, "insert"),
        (2, 2.0, "b", 4.0, "insert"),
        (1, 1.0, "a", None, "delete"),
    ]
    assert out.column("model_alias").to_pylist()[0] is None  # a version URI names no alias


def test_polls_until_stopped(sws: Workspace, names: tuple[str, str]) -> None:
    source, target = names
    sws.tables.write(source, rows([1], [1]), primary_keys=["id"])
    stop = threading.Event()
    committed: list[MicroBatch] = []
    seen = threading.Condition()

    def note(batch: MicroBatch) -> None:
        with seen:
            committed.append(batch)
            seen.notify_all()

    def wait_for(count: int) -> None:
        with seen:
            assert seen.wait_for(lambda: len(committed) >= count, timeout=60)

    results = []
    worker = threading.Thread(
        target=lambda: results.append(
            run_stream(
                sws,
                "ml.double@champion",
                input=source,
                output=target,
                interval_s=0.05,
                stop=stop,
                progress=note,
            )
        )
    )
    worker.start()
    try:
        wait_for(1)
        sws.tables.write(source, rows([2, 3], [2, 3]))
        wait_for(2)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert (results[0].micro_batches, results[0].rows_scored) == (2, 3)
    assert Counter(sws.tables.read(target).column("id").to_pylist()) == {1: 1, 2: 1, 3: 1}


def test_refuses_before_reading_anything(sws: Workspace, names: tuple[str, str]) -> None:
    source, target = names
    sws.tables.write(source, rows([1], [1]))
    with pytest.raises(LakeforgeError, match="cannot load"):
        run_stream(sws, "ml.broken/1", input=source, output=target, once=True)
    with pytest.raises(LakeforgeError, match="not models:/NAME/VERSION"):
        run_stream(sws, "ml.double", input=source, output=target, once=True)
    with pytest.raises(LakeforgeError, match="is the input table"):
        run_stream(sws, "ml.double@champion", input=source, output=source, once=True)
    with pytest.raises(LakeforgeError, match="not both"):
        run_stream(sws, "ml.double/1", input=source, output=target, keys=["id"], keep_columns=True)
    sws.tables.write(target, pa.table({"id": ["a"], "prediction": ["b"]}))
    with pytest.raises(LakeforgeError, match="refused before scoring"):
        run_stream(sws, "ml.double@champion", input=source, output=target, once=True)
    assert sws.tables.read(target).num_rows == 1


CHILD = """
import os, signal, sys
import lakeforge
from lakeforge.inference import run_stream
from lakeforge.lakehouse import Lakehouse

project, source, target, die_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
write, errors_commits = Lakehouse.write, []

def write_then_die(self, name, data, **options):
    result = write(self, name, data, **options)
    if str(name).endswith("_errors"):
        errors_commits.append(name)
        if len(errors_commits) == die_after:  # between the errors and the output commit
            os.kill(os.getpid(), signal.SIGKILL)
    return result

Lakehouse.write = write_then_die
with lakeforge.connect("dev", project_dir=project) as ws:
    run_stream(
        ws, "models:/ml.double@champion", input=source, output=target, once=True, max_rows=1,
        progress=lambda b: print("batch", b.first_version, b.last_version, flush=True),
    )
print("done", flush=True)
"""


def crash_input(ws: Workspace, source: str) -> None:
    """12 input versions: appends (one row in four fails), an update and a delete."""
    for version in range(10):
        ids = [4 * version + i for i in range(4)]
        data = rows(ids, [float(ids[0]), float(ids[1]), -1.0, float(ids[3])])
        ws.tables.write(source, data, primary_keys=["id"] if version == 0 else None)
    ws.tables.merge(source, rows([0, 1, 100], [50.0, -1.0, 100.0]))
    ws.tables.delete(source, "id IN (3, 5)")


class Child:
    """A streaming subprocess (``die_after``: kill itself after that many errors commits)."""

    def __init__(self, project: Path, source: str, target: str, die_after: int = 0) -> None:
        self.log = project / f"stream-{uuid.uuid4().hex[:6]}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(project), source, target, str(die_after)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ | {"LF_TEST_SLOW_S": "0.03", "MLFLOW_DISABLE_TELEMETRY": "true"},
                cwd=Path(__file__).parents[2],
            )

    def batches(self) -> int:
        return self.log.read_text().count("batch ")

    def kill_after(self, batches: int, delay_s: float) -> None:
        deadline = time.monotonic() + 120
        while self.batches() < batches and self.process.poll() is None:
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.02)
        time.sleep(delay_s)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def wait(self) -> int:
        return self.process.wait(timeout=180)


@pytest.mark.slow
def test_exactly_once_across_kill_9_and_restarts(
    sws: Workspace, names: tuple[str, str], scoring_project: Path
) -> None:
    source, target = names
    crash_input(sws, source)
    seed = random.randrange(1_000_000)
    chance = random.Random(seed)
    app = f"lakeforge.stream/{sws.tables.name(target)}/{sws.tables.name(source)}"

    # a kill anywhere in the third micro-batch (scoring, the errors or the output commit)
    Child(scoring_project, source, target).kill_after(2, chance.uniform(0, 0.4))
    # a kill between the errors and the output commit of the second micro-batch it runs
    dying = Child(scoring_project, source, target, die_after=2)
    assert dying.wait() == -signal.SIGKILL, dying.log.read_text()[-3000:]
    output_at = sws.tables.delta(target).transaction_version(app)
    errors_at = sws.tables.delta(target + "_errors").transaction_version(app)
    assert errors_at > output_at, "the kill did not land between the two commits"
    last = Child(scoring_project, source, target)
    assert last.wait() == 0, last.log.read_text()[-3000:]

    changes = sws.tables.changes(source).to_pylist()
    expected = Counter(
        (c["id"], c["_commit_version"], str(c["_change_type"]))
        for c in changes
        if c["_change_type"] != "update_preimage"
        and (c["x"] != -1 or c["_change_type"] == "delete")
    )
    out = sws.tables.read(target).to_pylist()
    got = Counter((r["id"], r["input_version"], r["change_type"]) for r in out)
    assert got == expected, f"seed {seed}"
    assert max(got.values()) == 1 and sum(c == "delete" for _, _, c in got) == 2
    failed = [c for c in changes if c["x"] == -1 and c["_change_type"] != "update_preimage"]
    errors = sws.tables.read(target + "_errors").to_pylist()
    assert Counter((e["row"], e["input_version"]) for e in errors) == Counter(
        (f'{{"id": {c["id"]}, "x": -1.0}}', c["_commit_version"]) for c in failed
    ), f"seed {seed}"
    assert sws.tables.delta(target).transaction_version(app) == sws.tables.delta(source).version()


@pytest.mark.slow
def test_cli_streams_until_sigterm_then_once(
    sws: Workspace,
    names: tuple[str, str],
    scoring_project: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lakeforge.cli import main

    source, target = names
    sws.tables.write(source, rows([1, 2, 3], [1, 2, 3]), primary_keys=["id"])
    args = ["--project-dir", str(scoring_project), "score", "ml.double@champion"]
    args += ["--input", source, "--output", target, "--stream"]
    log = scoring_project / f"cli-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lakeforge", *args, "--interval", "0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | {"COLUMNS": "200", "LAKEFORGE_TARGET": "dev"},
        )
    try:

        def wait_for(text: str) -> None:
            deadline = time.monotonic() + 120
            while text not in log.read_text():
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

        wait_for("input v0-v0: 3 scored")
        sws.tables.write(source, rows([4], [4]))
        wait_for("input v1-v1: 1 scored")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert "streamed 2 micro-batch(es): 4 rows scored" in log.read_text()

    sws.tables.delete(source, "id = 4")
    with pytest.raises(SystemExit) as done:
        main([*args, "--once"])
    assert done.value.code in (0, None)
    assert "input v2-v2: 0 scored, 0 failed, 1 deleted" in capsys.readouterr().out
    out = sws.tables.read(target).to_pylist()
    assert Counter((r["id"], r["change_type"]) for r in out) == {
        (1, "insert"): 1,
        (2, "insert"): 1,
        (3, "insert"): 1,
        (4, "insert"): 1,
        (4, "delete"): 1,
    }
    with pytest.raises(SystemExit):
        main([*args[:-1], "--once"])
    assert "--once needs --stream" in capsys.readouterr().err
