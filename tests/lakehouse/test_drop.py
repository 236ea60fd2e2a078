"""Dropping tables: `lakeforge tables drop` and `DROP TABLE` through `sql --write`."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pytest

from lakeforge import Workspace
from lakeforge.cli import main
from lakeforge.errors import LakeforgeError


def _cli(capsys: pytest.CaptureFixture[str], project: Path, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), *args])
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out + out.err


def test_tables_drop_asks_then_deletes(
    ws: Workspace,
    project_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws.tables.write("dev.bronze.t", pa.table({"x": [1, 2]}))
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _ = _cli(capsys, project_dir, "tables", "drop", "dev.bronze.t")
    assert code == 1 and ws.tables.exists("dev.bronze.t")
    code, out = _cli(capsys, project_dir, "tables", "drop", "bronze.t", "--yes")
    assert code == 0 and "dropped dev.bronze.t" in out
    assert not ws.tables.exists("dev.bronze.t") and "dev.bronze.t" not in map(str, ws.tables.list())
    code, out = _cli(capsys, project_dir, "tables", "drop", "dev.bronze.t", "--yes")
    assert code == 1 and "table dev.bronze.t does not exist" in out
    # a target drops only its own tables
    code, out = _cli(capsys, project_dir, "tables", "drop", "prod.bronze.t", "--yes")
    assert code == 1 and "cannot write prod.bronze.t" in out


def test_sql_drop_table_needs_write_and_is_all_or_nothing(ws: Workspace) -> None:
    ws.tables.write("dev.bronze.a", pa.table({"x": [1]}))
    with pytest.raises(LakeforgeError, match="read-only"):
        ws.sql("DROP TABLE dev.bronze.a")
    with pytest.raises(LakeforgeError, match="does not exist"):
        ws.sql("DROP TABLE dev.bronze.a; DROP TABLE dev.bronze.nope", read_only=False)
    assert ws.tables.exists("dev.bronze.a")  # nothing dropped when a later statement fails
    dropped = ws.sql(
        "DROP TABLE IF EXISTS dev.bronze.nope; DROP TABLE dev.bronze.a", read_only=False
    )
    assert dropped.to_pylist() == [{"table": "dev.bronze.a", "dropped": True}]
    assert not ws.tables.exists("dev.bronze.a")
    with pytest.raises(LakeforgeError, match="cannot write prod.bronze.a"):
        ws.sql("DROP TABLE prod.bronze.a", read_only=False)
