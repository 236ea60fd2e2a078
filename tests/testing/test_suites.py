"""The public conformance suites: importable only on demand, and they catch broken backends."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lakeforge.features.online import Record, SqliteOnlineStore, SqliteOnlineStoreConfig, TableSpec
from lakeforge.state import Lease, StateStore, leases, upsert
from lakeforge.testing import (
    OnlineStoreCapabilities,
    check_online_store,
    check_state_store,
    online_store_checks,
    state_store_checks,
)


def test_importing_lakeforge_imports_neither_pytest_nor_the_suites() -> None:
    code = (
        "import sys, lakeforge, lakeforge.features.online, lakeforge.state\n"
        "print(sorted(m for m in sys.modules if m == 'pytest' or m.startswith('lakeforge.testing')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class _LastWriteWins(SqliteOnlineStore):
    """A broken store: it forgets timestamps, so a late older row overwrites a newer one."""

    def _upsert(self, spec: TableSpec, records: Sequence[Record], written: int) -> int:
        return super()._upsert(spec, [dataclasses.replace(r, ts=None) for r in records], written)


def test_the_online_suite_fails_a_store_that_lets_older_rows_win(tmp_path: Path) -> None:
    config = SqliteOnlineStoreConfig(path=tmp_path / "online.db", namespace="broken")
    with pytest.raises(AssertionError) as info:
        check_online_store(lambda: _LastWriteWins(config))
    assert "check_late_older_row_ignored" in "\n".join(getattr(info.value, "__notes__", []))


def test_capabilities_select_the_checks_a_store_must_pass() -> None:
    every = dict(online_store_checks())
    private = dict(online_store_checks(OnlineStoreCapabilities(shared=False)))
    assert set(every) - set(private) == {
        "check_concurrent_interleaved_writes_keep_newest",
        "check_reader_sees_table_recreated_elsewhere",
    }


def test_the_state_suite_fails_a_lease_that_can_be_taken_while_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def grab(self: Lease) -> bool:  # takes the lease whoever holds it
        with self.state.connect_engine().begin() as conn:
            until = datetime.now(UTC) + self.duration
            upsert(conn, leases, {"name": self.name}, {"owner": self.owner, "until": until})
        return True

    monkeypatch.setattr(Lease, "acquire", grab)
    checks = dict(state_store_checks())
    with pytest.raises(AssertionError):
        checks["check_lease_acquire_renew_release"](f"sqlite:///{tmp_path}/state.db")
    with pytest.raises(AssertionError, match=r"acquired \[True, True"):
        checks["check_lease_racing_owners_one_wins"](f"sqlite:///{tmp_path}/state.db")


def test_the_state_suite_asks_for_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.db"
    StateStore(url).migrate()
    with pytest.raises(AssertionError, match="needs an empty database") as info:
        check_state_store(url)
    assert "check_concurrent_migration" in "\n".join(getattr(info.value, "__notes__", []))
