"""The state store passes the public conformance suite on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeforge.testing import StateStoreCheck, check_state_store, parametrize_state_store_checks


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, one per test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/state.db"
    return str(request.getfixturevalue("pg_url"))


@parametrize_state_store_checks()
def test_state_store_check(empty_url: str, check: StateStoreCheck) -> None:
    check(empty_url)


def test_the_whole_suite_runs_on_one_database(empty_url: str) -> None:
    """Checks name their own rows, so one database takes them all, one after the other."""
    check_state_store(empty_url)
