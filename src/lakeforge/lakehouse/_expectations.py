"""Data-quality expectations on table writes, in the style of Delta Live Tables.

A rule is a SQL boolean expression evaluated by DuckDB on every row written. A row
passes a rule only when the expression is TRUE: NULL counts as a violation, so write
``col IS NULL OR col > 0`` to let nulls through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, field_validator

from lakeforge.errors import ExpectationError

Action = Literal["warn", "drop", "fail"]
QUARANTINE_SUFFIX = "_quarantine"
FAILED_RULES_COLUMN = "_failed_rules"
_SAMPLE_ROWS = 5


class Expectation(BaseModel):
    """One named rule: ``warn`` counts violations, ``drop`` quarantines rows, ``fail`` aborts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    sql: str
    action: Action = "warn"

    @field_validator("name", "sql")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value


def expect(name: str, sql: str) -> Expectation:
    """Count rows that violate ``sql``; write them anyway."""
    return Expectation(name=name, sql=sql, action="warn")


def expect_or_drop(name: str, sql: str) -> Expectation:
    """Send rows that violate ``sql`` to ``<table>_quarantine`` instead of the table.

    The quarantined rows carry ``_failed_rules``: every rule of the write they broke.
    """
    return Expectation(name=name, sql=sql, action="drop")


def expect_or_fail(name: str, sql: str) -> Expectation:
    """Write nothing when any row violates ``sql``."""
    return Expectation(name=name, sql=sql, action="fail")


@dataclass
class RuleResult:
    rule: Expectation
    failed: int


@dataclass
class QualityOutcome:
    """What the expectations decided for one batch of rows."""

    rows_in: int
    passed: pa.Table
    quarantined: pa.Table | None
    results: list[RuleResult] = field(default_factory=list)

    @property
    def rows_dropped(self) -> int:
        return 0 if self.quarantined is None else self.quarantined.num_rows


def _evaluate(con: duckdb.DuckDBPyConnection, rule: Expectation, table: str) -> np.ndarray:
    try:
        result = con.sql(
            f"SELECT COALESCE(({rule.sql})::BOOLEAN, FALSE) AS ok FROM __lf_input"
        ).to_arrow_table()
    except duckdb.Error as exc:
        raise ExpectationError(
            f"expectation {rule.name!r} on {table}: cannot evaluate SQL {rule.sql!r}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return result.column("ok").to_numpy(zero_copy_only=False).astype(bool)


def apply_expectations(data: pa.Table, rules: list[Expectation], *, table: str) -> QualityOutcome:
    """Evaluate ``rules`` on ``data``. Raises :class:`ExpectationError` for a failed ``fail`` rule."""
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise ExpectationError(f"expectations on {table} have duplicate names: {names}")
    if not rules:
        return QualityOutcome(rows_in=data.num_rows, passed=data, quarantined=None)
    con = duckdb.connect()
    try:
        con.register("__lf_input", data)
        con.execute("SET enable_external_access = false")
        masks = {rule.name: _evaluate(con, rule, table) for rule in rules}
    finally:
        con.close()
    results = [RuleResult(rule, int((~masks[rule.name]).sum())) for rule in rules]
    for result in results:
        if result.rule.action == "fail" and result.failed:
            bad = data.filter(pa.array(~masks[result.rule.name])).slice(0, _SAMPLE_ROWS)
            raise ExpectationError(
                f"expect_or_fail {result.rule.name!r} ({result.rule.sql}) failed on "
                f"{result.failed} of {data.num_rows} rows written to {table}; nothing was "
                f"written. Sample rows:\n{bad.to_pandas().to_string(max_colwidth=40)}"
            )
    drop_rules = [rule for rule in rules if rule.action == "drop"]
    if not drop_rules:
        return QualityOutcome(data.num_rows, data, None, results)
    keep = np.logical_and.reduce([masks[rule.name] for rule in drop_rules])
    # A quarantined row names every rule it broke, ``warn`` ones included, in rule order.
    failed_names = [
        [rule.name for rule in rules if not masks[rule.name][row]] for row in np.flatnonzero(~keep)
    ]
    quarantined = data.filter(pa.array(~keep)).append_column(
        FAILED_RULES_COLUMN, pa.array(failed_names, pa.list_(pa.string()))
    )
    return QualityOutcome(data.num_rows, data.filter(pa.array(keep)), quarantined, results)
