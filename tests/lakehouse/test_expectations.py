"""Expectations on writes: warn, drop to quarantine, fail; every write logs its metrics."""

from __future__ import annotations

import pyarrow as pa
import pytest

from lakeforge import Workspace, expect, expect_or_drop, expect_or_fail
from lakeforge.errors import ExpectationError


def test_warn_drop_and_quality_log_on_real_flights(ws: Workspace, flights: pa.Table) -> None:
    rules = [
        expect("short_delay", "arr_delay < 60"),
        expect_or_drop("flew", "dep_time IS NOT NULL"),
        expect_or_drop("arrived", "arr_delay IS NOT NULL"),
    ]
    cancelled = flights.filter(pa.compute.is_null(flights.column("dep_time"))).num_rows
    no_arrival = flights.filter(pa.compute.is_null(flights.column("arr_delay"))).num_rows
    assert cancelled > 0 and no_arrival >= cancelled
    result = ws.tables.write("dev.silver.flights", flights, expectations=rules)
    assert result.rows_in == flights.num_rows
    assert result.rows_dropped == no_arrival
    assert result.rows_written == flights.num_rows - no_arrival
    assert result.rule_failures["flew"] == cancelled
    quarantine = ws.tables.read("dev.silver.flights_quarantine")
    assert quarantine.num_rows == no_arrival
    failed = quarantine.column("_failed_rules").to_pylist()
    # a row names every rule it broke, warn rules included (NULL breaks short_delay too)
    assert ["short_delay", "flew", "arrived"] in failed
    assert ["short_delay", "arrived"] in failed or cancelled == no_arrival
    log = ws.sql("""SELECT rule, action, rows_in, rows_failed, rows_written, rows_dropped, table_version
                    FROM dev.system.quality_log ORDER BY rule""").to_pylist()
    assert [(r["rule"], r["action"]) for r in log] == [
        ("arrived", "drop"),
        ("flew", "drop"),
        ("short_delay", "warn"),
    ]
    assert {r["rows_written"] for r in log} == {result.rows_written}
    assert {r["table_version"] for r in log} == {0}
    write_ids = (
        ws.sql("SELECT DISTINCT write_id FROM dev.system.quality_log")
        .column("write_id")
        .to_pylist()
    )
    assert set(quarantine.column("_write_id").to_pylist()) == set(write_ids)
    # a warn rule never drops: the violating rows are in the table
    assert (
        ws.sql("SELECT count(*) AS n FROM dev.silver.flights WHERE arr_delay >= 60")
        .column("n")[0]
        .as_py()
        > 0
    )


def test_null_counts_as_a_violation(ws: Workspace) -> None:
    result = ws.tables.write(
        "dev.s.t",
        pa.table({"x": [1, None, -1]}),
        expectations=[expect_or_drop("positive", "x > 0")],
    )
    assert result.rows_written == 1 and result.rows_dropped == 2


def test_expect_or_fail_writes_nothing_and_shows_sample_rows(
    ws: Workspace, flights: pa.Table
) -> None:
    ws.tables.write("dev.silver.flights", flights.slice(0, 5))
    with pytest.raises(ExpectationError) as info:
        ws.tables.write(
            "dev.silver.flights",
            flights,
            expectations=[expect_or_fail("no_cancellations", "dep_time IS NOT NULL")],
        )
    message = str(info.value)
    assert "no_cancellations" in message and "nothing was written" in message
    assert "Sample rows" in message and "tailnum" in message
    assert ws.tables.describe("dev.silver.flights").version == 0
    assert not ws.tables.exists("dev.silver.flights_quarantine")


def test_expectation_sql_that_does_not_parse_is_named(ws: Workspace) -> None:
    with pytest.raises(
        ExpectationError, match=r"expectation 'broken' on dev.s.t: cannot evaluate SQL 'x >>> '"
    ):
        ws.tables.write("dev.s.t", pa.table({"x": [1]}), expectations=[expect("broken", "x >>> ")])
    with pytest.raises(ExpectationError, match="no_col.*cannot evaluate"):
        ws.tables.write("dev.s.t", pa.table({"x": [1]}), expectations=[expect("no_col", "y > 0")])
    assert not ws.tables.exists("dev.s.t")


def test_duplicate_rule_names_are_refused(ws: Workspace) -> None:
    with pytest.raises(ExpectationError, match="duplicate names"):
        ws.tables.write(
            "dev.s.t",
            pa.table({"x": [1]}),
            expectations=[expect("a", "x > 0"), expect("a", "x < 9")],
        )


def test_every_write_is_logged_even_without_rules(ws: Workspace) -> None:
    ws.tables.write("dev.s.t", pa.table({"x": [1, 2]}))
    log = ws.sql("SELECT rule, rows_in, rows_written FROM dev.system.quality_log").to_pylist()
    assert log == [{"rule": None, "rows_in": 2, "rows_written": 2}]


def test_quarantined_rows_name_every_rule_they_broke(ws: Workspace) -> None:
    rules = [
        expect("positive", "x > 0"),
        expect_or_drop("present", "x IS NOT NULL"),
        expect_or_drop("small", "x < 10"),
    ]
    result = ws.tables.write("dev.s.t", pa.table({"x": [1, None, 20, -5]}), expectations=rules)
    assert result.rows_written == 2 and result.rule_failures == {
        "positive": 2,
        "present": 1,
        "small": 2,
    }
    quarantine = ws.tables.read("dev.s.t_quarantine").select(["x", "_failed_rules"])
    assert sorted(quarantine.to_pylist(), key=lambda r: r["x"] or 0) == [
        {"x": None, "_failed_rules": ["positive", "present", "small"]},
        {"x": 20, "_failed_rules": ["small"]},
    ]
