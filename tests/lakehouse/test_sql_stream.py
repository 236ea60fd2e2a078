"""SqlSession.stream: one read-only query, read batch by batch from a pinned snapshot."""

from __future__ import annotations

import gc

import duckdb
import pyarrow as pa
import pytest

from lakeforge import Workspace
from lakeforge.errors import SqlError
from lakeforge.lakehouse import SqlSession

TABLE = "dev.silver.flights"
FAILING = "SELECT CAST(CASE WHEN i < 5000 THEN '1' ELSE 'x' END AS INT) FROM range(9000) t(i)"
QUERY = f"SELECT carrier, flight, distance FROM {TABLE} ORDER BY flight, carrier, distance"


def test_streams_the_same_rows_as_run_in_several_batches(ws: Workspace, flights: pa.Table) -> None:
    ws.tables.write(TABLE, flights)  # 1,785 rows
    session = SqlSession(ws.tables)
    reader = session.stream(QUERY, batch_rows=400)
    batches = list(reader)
    assert [b.num_rows for b in batches] == [400, 400, 400, 400, 185]
    streamed = pa.Table.from_batches(batches, reader.schema)
    assert streamed.equals(session.run(QUERY))


def test_the_snapshot_is_pinned_when_stream_returns(ws: Workspace, flights: pa.Table) -> None:
    ws.tables.write(TABLE, flights.slice(0, 100))
    reader = SqlSession(ws.tables).stream(f"SELECT count(*) AS n FROM {TABLE}", batch_rows=10)
    ws.tables.write(TABLE, flights.slice(100, 50), mode="append")
    assert reader.read_all().column("n").to_pylist() == [100]


def test_the_read_only_guard_refuses_writes_before_any_read(
    ws: Workspace, flights: pa.Table
) -> None:
    ws.tables.write(TABLE, flights.slice(0, 3))
    session = SqlSession(ws.tables)
    for statement in [
        f"INSERT INTO {TABLE} SELECT * FROM {TABLE}",
        f"CREATE OR REPLACE TABLE dev.silver.copy AS SELECT * FROM {TABLE}",
        f"DROP TABLE {TABLE}",
        "COPY (SELECT 1) TO 'out.csv'",
    ]:
        with pytest.raises(SqlError, match="statements are not allowed: SQL is read-only"):
            session.stream(statement, batch_rows=10)
    assert ws.tables.read(TABLE).num_rows == 3
    assert not ws.tables.exists("dev.silver.copy")


def test_refuses_several_statements_and_bad_batch_sizes(ws: Workspace) -> None:
    session = SqlSession(ws.tables)
    with pytest.raises(SqlError, match="one statement, got 2"):
        session.stream("SELECT 1; SELECT 2", batch_rows=10)
    with pytest.raises(SqlError, match="batch_rows must be at least 1, got 0"):
        session.stream("SELECT 1", batch_rows=0)
    with pytest.raises(SqlError, match=r"SQL failed: .*\(lakehouse catalogs: dev"):
        session.stream("SELECT * FROM nowhere.s.t", batch_rows=10)


def test_errors_while_reading_are_sql_errors(ws: Workspace) -> None:
    reader = SqlSession(ws.tables).stream(FAILING, batch_rows=1000)
    with pytest.raises(SqlError, match="SQL failed: .*Could not convert"):
        reader.read_all()


def test_the_connection_closes_when_the_stream_ends_fails_or_is_dropped(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[duckdb.DuckDBPyConnection] = []
    from lakeforge.lakehouse import _sql

    def tracked() -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        opened.append(con)
        return con

    monkeypatch.setattr(_sql, "connect_duckdb", tracked)

    def is_open(con: duckdb.DuckDBPyConnection) -> bool:
        try:
            con.execute("SELECT 1")
        except duckdb.ConnectionException:  # closed
            return False
        except duckdb.ResourceInUseException:  # streaming a result
            return True
        return True

    session = SqlSession(ws.tables)
    read = session.stream("SELECT * FROM range(100)", batch_rows=10)
    assert is_open(opened[-1])
    read.read_all()
    assert not is_open(opened[-1])
    failed = session.stream(FAILING, batch_rows=1000)
    with pytest.raises(SqlError):
        failed.read_all()
    assert not is_open(opened[-1])
    partly = session.stream("SELECT * FROM range(100)", batch_rows=10)
    assert partly.read_next_batch().num_rows == 10
    del partly
    gc.collect()
    assert not is_open(opened[-1])
    unread = session.stream("SELECT * FROM range(100)", batch_rows=10)
    del unread
    gc.collect()
    assert not is_open(opened[-1])
