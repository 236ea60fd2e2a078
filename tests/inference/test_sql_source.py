"""SQL scoring input is streamed from DuckDB, never built whole in memory."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakeforge import Workspace
from lakeforge.errors import SqlError
from lakeforge.inference._source import sql_source
from lakeforge.lakehouse import SqlSession
from tests.inference.conftest import INPUT, INPUT_ROWS, NUMBERS

IGNORED = ["scored_at", "input_version"]


@pytest.fixture
def no_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """SqlSession.run (the whole result in memory) fails the test if scoring calls it."""

    def whole(*args: object, **kwargs: object) -> pa.Table:
        raise AssertionError("SQL scoring input must be streamed, not run whole")

    monkeypatch.setattr(SqlSession, "run", whole)


@pytest.mark.usefixtures("no_run")
def test_a_large_result_streams_in_chunks_in_order(sws: Workspace) -> None:
    source = sql_source(
        sws, f"SELECT id, x FROM {NUMBERS} ORDER BY id", chunk_rows=300, count_up_to=500
    )
    assert source.rows is None  # more than count_up_to: not counted ahead
    chunks = list(source.chunks)
    assert [c.number for c in chunks] == [1, 2, 3, 4]
    assert [c.rows for c in chunks] == [300, 300, 300, 100]
    ids = [i for c in chunks for u in c.units for i in u.read().column("id").to_pylist()]
    assert ids == list(range(1000))


@pytest.mark.usefixtures("no_run")
def test_a_small_result_is_counted_ahead(sws: Workspace) -> None:
    source = sql_source(sws, f"SELECT id, x FROM {NUMBERS} WHERE id < 250", chunk_rows=100)
    assert source.rows == 250
    assert [c.rows for c in source.chunks] == [100, 100, 50]


def test_sql_scoring_predicts_what_table_scoring_does(
    sws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = sws.score("ml.delay/1", input=INPUT, chunk_rows=700, workers=1, keep_columns=True)
    batch_sizes: list[int] = []
    stream = SqlSession.stream

    def counted(self: SqlSession, query: str, *, batch_rows: int) -> pa.RecordBatchReader:
        batch_sizes.append(batch_rows)
        return stream(self, query, batch_rows=batch_rows)

    monkeypatch.setattr(SqlSession, "stream", counted)
    sql = sws.score(
        "ml.delay/1", sql=f"SELECT * FROM {INPUT}", chunk_rows=700, workers=1, keep_columns=True
    )
    assert batch_sizes == [700]  # 2,000 rows: several batches
    assert sql.rows_in == table.rows_in == INPUT_ROWS
    assert table.data is not None and sql.data is not None
    by_id = [("id", "ascending")]
    expected = table.data.drop_columns(IGNORED).sort_by(by_id)
    scored = sql.data.drop_columns(IGNORED).sort_by(by_id)
    assert scored.column_names == expected.column_names
    assert scored.to_pylist() == expected.to_pylist()  # values (nullability is the table's)


def test_sql_scoring_refuses_writes(sws: Workspace) -> None:
    with pytest.raises(SqlError, match="INSERT statements are not allowed: SQL is read-only"):
        sws.score("ml.double/1", sql=f"INSERT INTO {NUMBERS} SELECT * FROM {NUMBERS}")
    assert sws.tables.read(NUMBERS).num_rows == 1000
