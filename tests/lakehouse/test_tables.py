"""The lakehouse catalog on real Delta tables."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from deltalake import CommitProperties, Transaction

import lakeforge
from lakeforge import Workspace
from lakeforge.errors import (
    LakeforgeError,
    PermissionDeniedError,
    SchemaMismatchError,
    TableExistsError,
    TableNotFoundError,
)
from lakeforge.lakehouse import WriteResult

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])


def rows(ids: list[int], score: float = 1.0) -> pa.Table:
    return pa.table(
        {"id": ids, "name": [f"n{i}" for i in ids], "score": [score] * len(ids)}, SCHEMA
    )


def test_create_describe_list(ws: Workspace) -> None:
    info = ws.tables.create(
        "dev.silver.people",
        SCHEMA,
        primary_keys=["id"],
        partition_by=["name"],
        comment="people we know",
        column_comments={"score": "0..1"},
    )
    assert info.version == 0 and info.num_rows == 0
    assert info.primary_keys == ["id"] and info.partition_columns == ["name"]
    assert info.comment == "people we know" and info.column_comments == {"score": "0..1"}
    assert info.properties["delta.enableChangeDataFeed"] == "true"
    assert not info.schema.field("id").nullable
    ws.tables.write("silver.people", rows([1, 2]))  # two-part name: the target's catalog
    assert ws.tables.describe("dev.silver.people").num_rows == 2
    assert "dev.silver.people" in [str(t) for t in ws.tables.list()]
    assert ws.tables.list(schema="gold") == []
    with pytest.raises(TableExistsError):
        ws.tables.create("dev.silver.people", SCHEMA)
    assert ws.tables.create("dev.silver.people", SCHEMA, if_not_exists=True).num_rows == 2


def test_create_rejects_unknown_key_columns(ws: Workspace) -> None:
    with pytest.raises(SchemaMismatchError, match="column 'nope' is not in the schema"):
        ws.tables.create("dev.silver.t", SCHEMA, primary_keys=["nope"])
    with pytest.raises(SchemaMismatchError, match="partition column 'zone'"):
        ws.tables.create("dev.silver.t", SCHEMA, partition_by=["zone"])
    assert not ws.tables.exists("dev.silver.t")


def test_append_overwrite_and_read_formats(ws: Workspace) -> None:
    v0 = ws.tables.write("dev.s.t", rows([1, 2, 3]))
    v1 = ws.tables.write("dev.s.t", pd.DataFrame({"id": [4], "name": ["n4"], "score": [2.0]}))
    assert (v0.version, v1.version) == (0, 1)
    assert ws.tables.read("dev.s.t").num_rows == 4
    assert isinstance(ws.tables.read("dev.s.t", format="pandas"), pd.DataFrame)
    polars_frame = ws.tables.read("dev.s.t", format="polars", columns=["id"], filter="id > 2")
    assert isinstance(polars_frame, pl.DataFrame) and sorted(polars_frame["id"].to_list()) == [3, 4]
    v2 = ws.tables.write(
        "dev.s.t", pl.DataFrame({"id": [9], "name": ["n9"], "score": [0.5]}), mode="overwrite"
    )
    assert ws.tables.read("dev.s.t").column("id").to_pylist() == [9]
    assert ws.tables.read("dev.s.t", version=1).num_rows == 4
    assert v2.version == 2
    with pytest.raises(SchemaMismatchError, match="no column"):
        ws.tables.read("dev.s.t", columns=["missing"])


def test_read_as_of_timestamp(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", rows([1]))
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    ws.tables.write("dev.s.t", rows([2]))
    assert ws.tables.read("dev.s.t", as_of=between).column("id").to_pylist() == [1]
    assert ws.tables.read("dev.s.t", as_of=between.isoformat()).num_rows == 1
    with pytest.raises(LakeforgeError, match="no version at"):
        ws.tables.read("dev.s.t", version=7)


def test_append_widens_types_and_fills_missing_columns(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", rows([1]))
    ws.tables.write(
        "dev.s.t", pa.table({"id": pa.array([2], pa.int32()), "score": pa.array([1], pa.int16())})
    )
    out = ws.tables.read("dev.s.t").sort_by("id")
    assert out.schema == SCHEMA.remove_metadata()
    assert out.column("name").to_pylist() == ["n1", None]


def test_append_with_wrong_schema_is_refused_and_changes_nothing(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", rows([1]))
    bad = pa.table({"id": ["not-a-number"], "name": ["x"], "extra": [1]})
    with pytest.raises(SchemaMismatchError) as info:
        ws.tables.write("dev.s.t", bad)
    message = str(info.value)
    assert "column id: table has int64, data has string" in message
    assert "new column(s) extra" in message
    assert ws.tables.describe("dev.s.t").version == 0
    ws.tables.write("dev.s.t", pa.table({"id": [2], "extra": [7]}), schema_evolution="merge")
    assert ws.tables.read("dev.s.t", filter="id = 2").column("extra").to_pylist() == [7]


def test_interrupted_write_leaves_the_previous_version(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", rows([1, 2]))

    def batches() -> Iterator[pa.RecordBatch]:
        yield rows(list(range(100, 200))).to_batches()[0]
        raise RuntimeError("source died midway")

    reader = pa.RecordBatchReader.from_batches(SCHEMA, batches())
    with pytest.raises(Exception, match="source died midway"):
        ws.tables.write("dev.s.t", reader)
    info = ws.tables.describe("dev.s.t")
    assert info.version == 0 and info.num_rows == 2
    assert sorted(ws.tables.read("dev.s.t").column("id").to_pylist()) == [1, 2]


def test_streaming_write_of_a_reader(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", rows([1]))
    reader = pa.RecordBatchReader.from_batches(
        SCHEMA, rows(list(range(10))).to_batches(max_chunksize=3)
    )
    assert ws.tables.write("dev.s.t", reader).rows_written == 10
    assert ws.tables.describe("dev.s.t").num_rows == 11


def test_merge_upserts_on_primary_keys(ws: Workspace) -> None:
    ws.tables.create("dev.s.t", SCHEMA, primary_keys=["id"])
    ws.tables.write("dev.s.t", rows([1, 2, 3]))
    result = ws.tables.merge("dev.s.t", rows([2, 3, 4], score=9.0))
    assert result.metrics["num_target_rows_updated"] == 2
    assert result.metrics["num_target_rows_inserted"] == 1
    out = dict(
        zip(*ws.tables.read("dev.s.t").select(["id", "score"]).to_pydict().values(), strict=True)
    )
    assert out == {1: 1.0, 2: 9.0, 3: 9.0, 4: 9.0}
    ws.tables.merge("dev.s.t", rows([4]), delete_missing=True)
    assert ws.tables.read("dev.s.t").column("id").to_pylist() == [4]


def test_merge_refuses_duplicate_keys_and_missing_keys(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", rows([1]))
    with pytest.raises(
        SchemaMismatchError, match="no keys given and the table has no primary keys"
    ):
        ws.tables.merge("dev.s.t", rows([1]))
    with pytest.raises(SchemaMismatchError, match=r"appear more than once.*'id': 5"):
        ws.tables.merge("dev.s.t", rows([5, 5]), keys=["id"])
    assert ws.tables.describe("dev.s.t").version == 0


def test_delete_restore_history_and_change_feed(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", rows([1, 2, 3]))
    deleted = ws.tables.delete("dev.s.t", "id >= 2")
    assert deleted.rows_dropped == 2 and ws.tables.read("dev.s.t").num_rows == 1
    restored = ws.tables.restore("dev.s.t", version=0)
    assert restored.version == 2 and ws.tables.read("dev.s.t").num_rows == 3
    ops = [h["operation"] for h in ws.tables.history("dev.s.t")]
    assert ops == ["RESTORE", "DELETE", "WRITE"]
    changes = ws.tables.changes("dev.s.t", starting_version=1, ending_version=1)
    assert sorted(changes.column("_change_type").to_pylist()) == ["delete", "delete"]
    with pytest.raises(LakeforgeError, match="versions are 0..2"):
        ws.tables.restore("dev.s.t", version=9)
    with pytest.raises(LakeforgeError, match="delete from dev.s.t"):
        ws.tables.delete("dev.s.t", "no_such_column = 1")


def test_optimize_compacts_and_vacuum_removes_old_files(ws: Workspace) -> None:
    for i in range(5):
        ws.tables.write("dev.s.t", rows([i]))
    assert ws.tables.describe("dev.s.t").num_files == 5
    metrics = ws.tables.optimize("dev.s.t")
    assert metrics["numFilesRemoved"] == 5 and metrics["numFilesAdded"] == 1
    assert ws.tables.describe("dev.s.t").num_files == 1
    assert (
        len(ws.tables.vacuum("dev.s.t", retention_hours=0, dry_run=True, enforce_retention=False))
        == 5
    )
    with pytest.raises(LakeforgeError, match="vacuum of dev.s.t refused"):
        ws.tables.vacuum("dev.s.t", retention_hours=0)
    removed = ws.tables.vacuum("dev.s.t", retention_hours=0, enforce_retention=False)
    assert len(removed) == 5
    assert sorted(ws.tables.read("dev.s.t").column("id").to_pylist()) == [0, 1, 2, 3, 4]


def test_unknown_table_suggests_close_names(ws: Workspace) -> None:
    ws.tables.write("dev.bronze.flights", rows([1]))
    with pytest.raises(TableNotFoundError, match="dev.bronze.flight does not exist") as info:
        ws.tables.read("dev.bronze.flight")
    assert "did you mean dev.bronze.flights" in str(info.value)
    with pytest.raises(TableNotFoundError, match="unknown catalog 'qa'"):
        ws.tables.describe("qa.bronze.flights")


def test_targets_write_only_their_own_catalog_and_read_what_read_from_allows(
    project_dir: Path,
) -> None:
    prod = lakeforge.connect("prod", project_dir=project_dir)
    prod.tables.write("prod.silver.t", rows([1, 2]))
    dev = lakeforge.connect("dev", project_dir=project_dir)
    assert dev.tables.read("prod.silver.t").num_rows == 2  # dev reads prod
    with pytest.raises(PermissionDeniedError, match="target 'dev' cannot write prod.silver.t"):
        dev.tables.write("prod.silver.t", rows([3]))
    with pytest.raises(PermissionDeniedError, match="cannot write"):
        dev.tables.delete("prod.silver.t", "id = 1")
    staging = lakeforge.connect("staging", project_dir=project_dir)
    with pytest.raises(PermissionDeniedError, match="may not read prod.silver.t"):
        staging.tables.read("prod.silver.t")
    assert prod.tables.describe("prod.silver.t").version == 0
    assert Path(prod.tables.location("prod.silver.t")).is_relative_to(
        project_dir / ".lakeforge" / "prod"
    )


def test_bad_data_type_is_refused(ws: Workspace) -> None:
    with pytest.raises(TypeError, match="expected an Arrow table"):
        ws.tables.write("dev.s.t", [1, 2, 3])


def run_concurrently(
    workers: int, work: Callable[[int], list[WriteResult]]
) -> list[list[WriteResult]]:
    """Run ``work(i)`` in ``workers`` threads started together; re-raise the first error."""
    start = threading.Barrier(workers)

    def task(i: int) -> list[WriteResult]:
        start.wait()
        return work(i)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(task, range(workers)))


def inserted_ids(ws: Workspace, version: int) -> set[int]:
    """The ids a commit inserted, from the change data feed."""
    feed = ws.tables.changes("dev.s.t", starting_version=version, ending_version=version)
    kinds = set(feed.column("_change_type").to_pylist())
    assert kinds <= {"insert", "update_preimage", "update_postimage"}
    return {
        row["id"]
        for row in feed.to_pylist()
        if row["_change_type"] in ("insert", "update_postimage")
    }


def test_concurrent_appends_each_report_their_own_commit(ws: Workspace) -> None:
    ws.tables.create("dev.s.t", SCHEMA)
    writers, writes = 4, 6

    def append(i: int) -> list[WriteResult]:
        out = []
        for k in range(writes):
            first = (i * writes + k) * 100
            size = i * writes + k + 1  # each write has its own row count
            out.append(ws.tables.write("dev.s.t", rows(list(range(first, first + size)))))
        return out

    results = run_concurrently(writers, append)
    versions = [r.version for per_writer in results for r in per_writer]
    assert sorted(versions) == list(range(1, writers * writes + 1))
    for i, per_writer in enumerate(results):
        for k, result in enumerate(per_writer):
            first, size = (i * writes + k) * 100, i * writes + k + 1
            assert result.version is not None
            assert result.rows_written == size
            assert inserted_ids(ws, result.version) == set(range(first, first + size))


def test_concurrent_merges_on_disjoint_keys_all_succeed(ws: Workspace) -> None:
    ws.tables.create("dev.s.t", SCHEMA, primary_keys=["id"])
    writers, merges = 4, 4
    ws.tables.write("dev.s.t", rows(list(range(writers * 10))))

    def upsert(i: int) -> list[WriteResult]:
        keys = list(range(i * 10, i * 10 + 10))
        return [
            ws.tables.merge("dev.s.t", rows(keys, score=float(round_ + 1)))
            for round_ in range(merges)
        ]

    results = run_concurrently(writers, upsert)
    versions = [r.version for per_writer in results for r in per_writer]
    assert sorted(versions) == list(range(2, writers * merges + 2))
    for i, per_writer in enumerate(results):
        for result in per_writer:
            assert result.version is not None and result.rows_written == 10
            assert inserted_ids(ws, result.version) == set(range(i * 10, i * 10 + 10))
    final = ws.tables.read("dev.s.t")
    assert final.num_rows == writers * 10
    assert set(final.column("score").to_pylist()) == {float(merges)}
    ops = {h["version"]: h["operation"] for h in ws.tables.history("dev.s.t")}
    assert all(ops[v] == "MERGE" for v in versions)


def test_concurrent_first_writes_create_the_table_once_and_all_commit(ws: Workspace) -> None:
    results = run_concurrently(4, lambda i: [ws.tables.write("dev.s.t", rows([i]))])
    assert sorted(r.version for [r] in results) == [0, 1, 2, 3]
    assert sorted(ws.tables.read("dev.s.t").column("id").to_pylist()) == [0, 1, 2, 3]
    for i, [result] in enumerate(results):
        assert result.version is not None and inserted_ids(ws, result.version) == {i}


def test_a_write_whose_transaction_version_the_table_has_is_refused(ws: Workspace) -> None:
    def batch(version: int) -> CommitProperties:
        return CommitProperties(app_transactions=[Transaction("loader", version)])

    ws.tables.write("dev.s.t", rows([1]), commit_properties=batch(1))
    ws.tables.write("dev.s.t", rows([2]), commit_properties=batch(2))
    with pytest.raises(
        LakeforgeError, match=r"'loader' is already at version 2.*carries version 2"
    ):
        ws.tables.write("dev.s.t", rows([3]), commit_properties=batch(2))
    assert ws.tables.describe("dev.s.t").version == 1
