"""DeltaSink commits each chunk once (errors first, then output); FileSink is all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from lakeforge import Workspace
from lakeforge.errors import LakeforgeError
from lakeforge.inference import ERRORS_SCHEMA, DeltaSink, FileSink, ScoredBatch

NOW = datetime(2024, 5, 6, tzinfo=UTC)


def batch(ids: list[int], failed: list[int]) -> ScoredBatch:
    output = pa.table({"id": ids, "prediction": [float(i) for i in ids]})
    errors = pa.Table.from_pylist(
        [
            {
                "row": f'{{"id": {i}}}',
                "error": "bad",
                "model_name": "m",
                "model_version": "1",
                "input_version": 0,
                "scored_at": NOW,
            }
            for i in failed
        ],
        schema=ERRORS_SCHEMA,
    )
    return ScoredBatch(output, errors)


def test_a_chunk_commits_once(ws: Workspace) -> None:
    sink = DeltaSink(ws, "dev.gold.out")
    assert sink.errors_table.table == "out_errors" and sink.committed("app") is None
    assert sink.commit(batch([1, 2], [3]), app_id="app", version=1) == 0
    assert sink.commit(batch([1, 2], [3]), app_id="app", version=1) is None  # a rerun
    assert sink.commit(batch([4], []), app_id="app", version=2) == 1
    assert sink.committed("app") == 2 and sink.committed("other") is None
    assert sorted(ws.tables.read("dev.gold.out").column("id").to_pylist()) == [1, 2, 4]
    assert ws.tables.read("dev.gold.out_errors").num_rows == 1


def test_a_crash_between_errors_and_output_never_duplicates_errors(ws: Workspace) -> None:
    from deltalake import CommitProperties, Transaction

    sink = DeltaSink(ws, "dev.gold.half")
    sink.commit(batch([1], []), app_id="app", version=1)
    # chunk 2's errors committed (as the sink does), then the process died:
    txn = CommitProperties(app_transactions=[Transaction("app", 2)])
    ws.tables.write("dev.gold.half_errors", batch([], [9]).errors, commit_properties=txn)
    assert sink.committed("app") == 1
    assert sink.commit(batch([5], [9]), app_id="app", version=2) is not None  # the rerun
    assert ws.tables.read("dev.gold.half_errors").num_rows == 1
    assert sorted(ws.tables.read("dev.gold.half").column("id").to_pylist()) == [1, 5]
    assert sink.committed("app") == 2


def test_conflicting_output_and_errors_tables_are_refused(ws: Workspace) -> None:
    ws.tables.write("dev.gold.o", pa.table({"id": ["a"], "prediction": [1.0]}))
    with pytest.raises(LakeforgeError, match="column id: table has string, data has int64"):
        DeltaSink(ws, "dev.gold.o").check(batch([1], []).output.schema)
    ws.tables.write("dev.gold.p_errors", pa.table({"row": [1]}))
    with pytest.raises(LakeforgeError, match="p_errors"):
        DeltaSink(ws, "dev.gold.p").check(batch([1], []).output.schema)


def test_a_file_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "s.csv")
    sink.write(batch([1, 2], [7]))
    assert list(tmp_path.iterdir()) != [] and not (tmp_path / "s.csv").exists()
    sink.close(ok=False)
    assert list(tmp_path.iterdir()) == []
    done = FileSink(tmp_path / "s.parquet")
    done.write(batch([1, 2], [7]))
    done.close(ok=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet", "s_errors.parquet"]
    with pytest.raises(LakeforgeError, match=r"must end in \.parquet or \.csv"):
        FileSink(tmp_path / "s.json")


def test_an_output_table_dropped_under_a_sink_is_seen_as_gone(ws: Workspace) -> None:
    sink = DeltaSink(ws, "dev.gold.dropped")
    sink.commit(batch([1], []), app_id="app", version=1)
    assert sink.committed("app") == 1
    ws.tables.drop("dev.gold.dropped")
    assert sink.committed("app") is None
    assert sink.commit(batch([2], []), app_id="app", version=1) is not None  # written again
    assert ws.tables.read("dev.gold.dropped").column("id").to_pylist() == [2]
