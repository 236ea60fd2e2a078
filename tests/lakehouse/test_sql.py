"""SQL over Delta tables through DuckDB."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.errors import PermissionDeniedError, SqlError, TableNotFoundError
from lakeforge.lakehouse import find_table_refs
from lakeforge.lakehouse._sql import connect


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
