"""SQL over Delta tables through DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.errors import LakeforgeError, PermissionDeniedError, SqlError, TableNotFoundError
from lakeforge.lakehouse import SqlSession, find_table_refs
from lakeforge.lakehouse import connect_duckdb as connect


def test_finds_three_part_names_but_not_in_strings_or_comments() -> None:
    query = """SELECT 'dev.a.b', x FROM dev.silver.flights@v3 f
               JOIN "dev"."silver"."planes" USING (tailnum)  -- dev.c.d
               JOIN prod.gold.m@20240501120000 ON 1=1, other.s.t"""
    refs = find_table_refs(query, ["dev", "prod"])
    assert [str(r.name) for r in refs] == ["dev.silver.flights", "dev.silver.planes", "prod.gold.m"]
    assert refs[0].version == 3 and refs[0].has_alias
    assert not refs[1].has_alias
    assert refs[2].as_of is not None and refs[2].as_of.isoformat() == "2024-05-01T12:00:00+00:00"


def test_aggregate_over_real_flights_matches_pyarrow(ws: Workspace, flights: pa.Table) -> None:
    ws.tables.write("dev.silver.flights", flights)
    result = ws.sql(
        "SELECT carrier, count(*) AS n FROM dev.silver.flights GROUP BY carrier ORDER BY carrier"
    )
    expected = flights.group_by("carrier").aggregate([("carrier", "count")]).sort_by("carrier")
    assert result.column("n").to_pylist() == expected.column("carrier_count").to_pylist()
    # the table name stays usable as a qualifier when no alias is given
    assert ws.sql("SELECT flights.carrier FROM dev.silver.flights LIMIT 1").num_rows == 1


def test_time_travel_by_version_and_timestamp(ws: Workspace, flights: pa.Table) -> None:
    ws.tables.write("dev.silver.flights", flights.slice(0, 10))
    stamp = ws.tables.history("dev.silver.flights")[0]["timestamp"]
    ws.tables.write("dev.silver.flights", flights.slice(10, 5))
    counts = ws.sql("""SELECT (SELECT count(*) FROM dev.silver.flights@v0) AS v0,
                              (SELECT count(*) FROM dev.silver.flights) AS latest""").to_pylist()[0]
    assert counts == {"v0": 10, "latest": 15}
    at = stamp.strftime("%Y%m%d%H%M%S") + f"{stamp.microsecond // 1000:03d}"
    assert ws.sql(f"SELECT count(*) AS n FROM dev.silver.flights@{at}").column("n")[0].as_py() == 10
    with pytest.raises(SqlError, match="bad time-travel suffix @vx"):
        ws.sql("SELECT * FROM dev.silver.flights@vx")


def test_read_only_by_default(ws: Workspace, flights: pa.Table) -> None:
    ws.tables.write("dev.silver.flights", flights.slice(0, 3))
    for statement in [
        "INSERT INTO dev.silver.flights SELECT * FROM dev.silver.flights",
        "CREATE TABLE x AS SELECT 1",
        "COPY (SELECT 1) TO 'out.csv'",
        "ATTACH 'other.db'",
    ]:
        with pytest.raises(SqlError, match="read-only"):
            ws.sql(statement)
    with pytest.raises(SqlError, match="file system operations are disabled"):
        ws.sql("SELECT * FROM read_csv('/etc/hostname')")
    assert ws.tables.describe("dev.silver.flights").version == 0


def test_create_table_as_and_insert_into_with_write(ws: Workspace, flights: pa.Table) -> None:
    ws.tables.write("dev.silver.flights", flights)
    ws.sql(
        "CREATE TABLE dev.gold.by_origin AS SELECT origin, count(*) AS n FROM dev.silver.flights GROUP BY 1",
        read_only=False,
    )
    assert ws.tables.read("dev.gold.by_origin").num_rows == 3
    with pytest.raises(SqlError, match="already exists"):
        ws.sql("CREATE TABLE dev.gold.by_origin AS SELECT 1 AS x", read_only=False)
    ws.sql("INSERT INTO dev.gold.by_origin SELECT 'XXX', 0", read_only=False)
    assert ws.sql("SELECT n FROM dev.gold.by_origin WHERE origin = 'XXX'").column(
        "n"
    ).to_pylist() == [0]
    ws.sql("CREATE OR REPLACE TABLE dev.gold.by_origin AS SELECT 1 AS only", read_only=False)
    assert ws.tables.read("dev.gold.by_origin").column_names == ["only"]
    with pytest.raises(PermissionDeniedError):
        ws.sql("CREATE TABLE prod.gold.x AS SELECT 1 AS a", read_only=False)


def test_errors_name_what_went_wrong(ws: Workspace) -> None:
    with pytest.raises(SqlError, match="does not parse"):
        ws.sql("SELEC 1")
    with pytest.raises(SqlError, match="empty SQL"):
        ws.sql("   ")
    with pytest.raises(TableNotFoundError, match="dev.silver.nope does not exist"):
        ws.sql("SELECT * FROM dev.silver.nope")
    with pytest.raises(SqlError, match="lakehouse catalogs: dev, staging, prod"):
        ws.sql("SELECT * FROM qa.silver.nope")


def test_cross_target_reads_follow_read_from(project_dir: Path) -> None:
    prod = lakeforge.connect("prod", project_dir=project_dir)
    prod.tables.write("prod.gold.m", pa.table({"a": [1, 2]}))
    dev = lakeforge.connect("dev", project_dir=project_dir)
    assert dev.sql("SELECT sum(a) AS s FROM prod.gold.m").column("s")[0].as_py() == 3
    staging = lakeforge.connect("staging", project_dir=project_dir)
    with pytest.raises(PermissionDeniedError):
        staging.sql("SELECT * FROM prod.gold.m")


def test_string_filters_work_after_a_merge_rewrote_files(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", pa.table({"k": ["a", "b"], "v": [1, 2]}), primary_keys=["k"])
    ws.tables.merge("dev.s.t", pa.table({"k": ["b", "c"], "v": [5, 6]}))
    ws.tables.write("dev.s.t", pa.table({"k": ["d"], "v": [7]}))
    assert ws.sql(
        "SELECT count(*) AS n FROM dev.s.t WHERE k >= 'b' AND k IN ('b', 'd')"
    ).to_pylist() == [{"n": 2}]


def test_asof_join_setting_is_on() -> None:
    con = connect()
    assert con.sql("SELECT current_setting('asof_loop_join_threshold') AS v").fetchall() == [(0,)]
    con.close()


def test_partitioned_and_evolved_tables_read_the_same_through_both_scan_paths(
    ws: Workspace, flights: pa.Table
) -> None:
    ws.tables.write("dev.s.by_origin", flights, partition_by=["origin"])
    assert ws.tables.parquet_snapshot("dev.s.by_origin") is None  # partitioned: Arrow dataset path
    by_origin = ws.sql("SELECT origin, count(*) AS n FROM dev.s.by_origin GROUP BY 1 ORDER BY 1")
    assert sum(by_origin.column("n").to_pylist()) == flights.num_rows
    ws.tables.write("dev.s.plain", flights.select(["carrier", "distance"]))
    ws.tables.write(
        "dev.s.plain",
        pa.table({"carrier": ["ZZ"], "distance": [1], "note": ["new"]}),
        schema_evolution="merge",
    )
    files, schema = ws.tables.parquet_snapshot("dev.s.plain") or ([], None)
    assert (
        len(files) == 2 and schema is not None and schema.names == ["carrier", "distance", "note"]
    )
    rows = ws.sql("SELECT count(*) AS n, count(note) AS notes FROM dev.s.plain").to_pylist()
    assert rows == [{"n": flights.num_rows + 1, "notes": 1}]
    joined = ws.sql("""SELECT count(*) AS n FROM dev.s.plain p JOIN dev.s.by_origin o
                       ON p.carrier = o.carrier AND p.distance = o.distance""")
    assert joined.column("n")[0].as_py() >= flights.num_rows


def _prod_secret(project_dir: Path) -> tuple[Workspace, Path, bytes]:
    """A prod table readable from dev, its single data file and that file's bytes."""
    prod = lakeforge.connect("prod", project_dir=project_dir)
    prod.tables.write("prod.bronze.secret", pa.table({"a": [1, 2, 3]}))
    snapshot = prod.tables.parquet_snapshot("prod.bronze.secret")
    assert snapshot is not None
    [path] = snapshot[0]
    return lakeforge.connect("dev", project_dir=project_dir), Path(path), Path(path).read_bytes()


def test_explain_analyze_of_a_write_is_refused_and_leaves_prod_files_alone(
    project_dir: Path,
) -> None:
    dev, path, before = _prod_secret(project_dir)
    copy = (
        f"COPY (SELECT * FROM prod.bronze.secret WHERE false) TO '{path}' "
        "(FORMAT parquet, USE_TMP_FILE false)"
    )
    for attack in [
        f"SELECT count(*) FROM prod.bronze.secret; EXPLAIN ANALYZE {copy}",
        f"SELECT count(*) FROM prod.bronze.secret; EXPLAIN {copy}",
        f"SELECT count(*) FROM prod.bronze.secret; EXPLAIN (ANALYZE) {copy}",
    ]:
        with pytest.raises(SqlError, match="EXPLAIN of a COPY statement is not allowed"):
            dev.sql(attack)
    assert path.read_bytes() == before
    assert dev.sql("SELECT sum(a) AS s FROM prod.bronze.secret").to_pylist() == [{"s": 6}]
    # EXPLAIN [ANALYZE] of a query still works
    for explain in ["EXPLAIN", "EXPLAIN ANALYZE"]:
        plan = dev.sql(f"{explain} SELECT sum(a) FROM prod.bronze.secret")
        assert plan.num_rows >= 1


def test_the_read_executor_cannot_write_even_when_the_classifier_is_bypassed(
    project_dir: Path,
) -> None:
    """Statements handed straight to the executor that runs queries never reach a file."""
    dev, path, before = _prod_secret(project_dir)
    session = SqlSession(dev.tables)
    query = "SELECT * FROM prod.bronze.secret"
    refs = find_table_refs(query, dev.tables.project.catalogs)
    _, scans, _ = session._rewrite(query, refs)
    con = connect()
    try:
        session._register(con, scans)
        copy = f"COPY (SELECT 1 AS a) TO '{path}' (FORMAT parquet, USE_TMP_FILE false)"
        for statement in [
            copy,
            f"EXPLAIN ANALYZE {copy}",
            f"SELECT 1) x; {copy}; SELECT * FROM (SELECT 1",
            f"SELECT 1 AS a\n); {copy}; --",
            "SET allowed_paths = ['/etc/hostname']",
            "SELECT * FROM enable_profiling()",  # a query that would change a setting
        ]:
            with pytest.raises(SqlError):
                session._select(con, statement)
        with pytest.raises(duckdb.Error, match="locked"):  # the configuration is frozen
            con.execute("SET allowed_paths = ['/etc/hostname']")
    finally:
        con.close()
    assert path.read_bytes() == before


def test_a_multi_statement_write_is_all_or_nothing(ws: Workspace) -> None:
    ws.tables.write("dev.silver.t", pa.table({"a": [1, 2]}))
    ws.tables.write("dev.silver.u", pa.table({"n": [1]}))
    for batch, error in [
        (
            "CREATE TABLE dev.gold.new AS SELECT 1 AS x; "
            "INSERT INTO dev.silver.t SELECT 3; SELECT * FROM nope",
            "nope",
        ),
        (
            "INSERT INTO dev.silver.t SELECT 3; CREATE TABLE dev.gold.new AS SELECT 1 AS x; "
            "INSERT INTO dev.silver.u SELECT 'not a number'",
            "dev.silver.u",
        ),
        ("INSERT INTO dev.silver.t SELECT 3; CREATE TABLE prod.gold.x AS SELECT 1", "prod"),
        ("INSERT INTO dev.silver.t SELECT 3; DELETE FROM dev.silver.t", "DELETE statements"),
        (
            "INSERT INTO dev.silver.t SELECT 3; INSERT INTO dev.silver.t SELECT 4",
            "more than one statement",
        ),
    ]:
        with pytest.raises(LakeforgeError, match=error):
            ws.sql(batch, read_only=False)
        assert ws.tables.describe("dev.silver.t").version == 0, batch
        assert ws.tables.describe("dev.silver.u").version == 0, batch
        assert not ws.tables.exists("dev.gold.new"), batch
    assert ws.tables.read("dev.silver.t").column("a").to_pylist() == [1, 2]
    # a batch that is fine commits every statement, in order
    result = ws.sql(
        "INSERT INTO dev.silver.t SELECT 3; CREATE TABLE dev.gold.new AS SELECT 1 AS x",
        read_only=False,
    )
    assert result.column("table").to_pylist() == ["dev.gold.new"]
    assert sorted(ws.tables.read("dev.silver.t").column("a").to_pylist()) == [1, 2, 3]


def test_read_filter_is_one_expression_over_the_columns(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", pa.table({"k": ["a", "b", "c"], "v": [1, 2, 3]}))
    [path] = (ws.tables.parquet_snapshot("dev.s.t") or ([], None))[0]
    before = Path(path).read_bytes()
    assert ws.tables.read("dev.s.t", filter="v >= 2 AND k <> 'c'").to_pylist() == [
        {"k": "b", "v": 2}
    ]
    for bad, message in [
        ("true; COPY (SELECT 1 AS k) TO '" + path + "' (FORMAT parquet)", "one SQL expression"),
        ("length(read_text('/etc/hostname')) > 0", "read_text"),
        ("EXISTS (SELECT * FROM read_text('/etc/hostname'))", "subqueries"),
        ("v IN (FROM range(3))", "subqueries"),
        ("nope > 1", "nope"),
    ]:
        with pytest.raises(SqlError, match="filter") as info:
            ws.tables.read("dev.s.t", filter=bad)
        assert message in str(info.value), (bad, str(info.value))
    assert Path(path).read_bytes() == before


def test_filter_on_an_ingested_csv_table(ws: Workspace, tmp_path: Path, flights: pa.Table) -> None:
    """Ingest tags rows with a dictionary-encoded file column, which the scan must read."""
    landing = tmp_path / "in"
    landing.mkdir()
    for day in (1, 2):
        pacsv.write_csv(
            flights.filter(pc.equal(flights.column("day"), day)), landing / f"{day}.csv"
        )
    assert ws.ingest(landing, "dev.bronze.flights").rows == flights.num_rows
    expected = flights.filter(pc.equal(flights.column("carrier"), "UA")).num_rows
    united = ws.tables.read("dev.bronze.flights", filter="carrier = 'UA'")
    assert united.num_rows == expected > 0
    assert united.schema == ws.tables.read("dev.bronze.flights").schema
    some = ws.tables.read("dev.bronze.flights", filter="Carrier = 'UA'", columns=["dest"])
    assert some.column_names == ["dest"] and some.num_rows == expected
