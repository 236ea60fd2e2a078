"""The command line, driven as a user would: the real console script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from lakeforge.cli import main


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakeforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=120,
    )


def test_new_user_walkthrough_from_the_readme(tmp_path: Path, flights: pa.Table) -> None:
    landing = tmp_path / "csvs"
    landing.mkdir()
    for day in (1, 2):
        pacsv.write_csv(
            flights.filter(pc.equal(flights.column("day"), day)), landing / f"d{day}.csv"
        )
    assert cli("init", "demo", cwd=tmp_path).returncode == 0
    project = tmp_path / "demo"
    first = cli("ingest", str(landing), "--into", "dev.bronze.x", cwd=project)
    assert first.returncode == 0, first.stderr
    assert "loaded 2 file(s)" in first.stdout
    again = cli("ingest", str(landing), "--into", "dev.bronze.x", cwd=project)
    assert "loaded 0 file(s), 0 rows; skipped 2" in again.stdout
    out = cli("sql", "select count(*) as n from dev.bronze.x", "--format", "json", cwd=project)
    assert json.loads(out.stdout) == [{"n": flights.num_rows}]


def test_global_options_target_and_project_dir_from_anywhere(tmp_path: Path) -> None:
    cli("init", "p", cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = str(tmp_path / "p")
    made = cli(
        "--project-dir",
        project,
        "-t",
        "staging",
        "sql",
        "create table staging.gold.t as select 42 as answer",
        "--write",
        cwd=elsewhere,
    )
    assert made.returncode == 0, made.stderr
    listed = cli(
        "--project-dir",
        project,
        "tables",
        "list",
        cwd=elsewhere,
        env={"LAKEFORGE_TARGET": "staging"},
    )
    assert "staging.gold.t" in listed.stdout
    wrong = cli("--project-dir", project, "-t", "qa", "tables", "list", cwd=elsewhere)
    assert wrong.returncode == 1
    assert "unknown target 'qa'" in wrong.stderr and "Traceback" not in wrong.stderr


def test_tables_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(tmp_path / "p"), *args])
        out = capsys.readouterr()
        assert exit_info.value.code == 0, out.err
        return out.out

    main_init = ["init", "p", "--dir", str(tmp_path)]
    with pytest.raises(SystemExit):
        main(main_init)
    run(
        "tables",
        "create",
        "dev.silver.people",
        "--schema",
        "id BIGINT, name VARCHAR, born DATE",
        "--primary-key",
        "id",
        "--comment",
        "who is who",
    )
    described = run("tables", "describe", "dev.silver.people")
    assert "primary key: id" in described and "who is who" in described and "date32" in described
    run("sql", "insert into dev.silver.people select 1, 'ada', DATE '1815-12-10'", "--write")
    run("sql", "insert into dev.silver.people select 2, 'alan', DATE '1912-06-23'", "--write")
    assert "deleted 1 rows" in run("tables", "delete", "dev.silver.people", "--where", "id = 2")
    history = run("tables", "history", "dev.silver.people")
    assert "DELETE" in history and "WRITE" in history and "CREATE TABLE" in history
    assert "restored dev.silver.people; now version 4" in run(
        "tables", "restore", "dev.silver.people", "--version", "2"
    )
    assert "alan" in run("tables", "show", "dev.silver.people")
    assert "optimized" in run("tables", "optimize", "dev.silver.people")
    assert "would delete" in run("tables", "vacuum", "dev.silver.people", "--dry-run")
    csv_out = run("sql", "select name from dev.silver.people order by id", "--format", "csv")
    assert csv_out.splitlines() == ['"name"', '"ada"', '"alan"']
    target = tmp_path / "out.parquet"
    run("sql", "select * from dev.silver.people", "--format", "parquet", "-o", str(target))
    assert pq.read_table(target).num_rows == 2


def test_errors_print_one_message_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["init", "p", "--dir", str(tmp_path)])
    for args, expected in [
        (["tables", "describe", "dev.silver.nope"], "table dev.silver.nope does not exist"),
        (["sql", "select * from dev.x.y@vq"], "bad time-travel suffix"),
        (["sql", "delete from dev.x.y"], "read-only"),
        (
            ["tables", "create", "dev.s.t", "--schema", "id NOTATYPE"],
            "columns 'id NOTATYPE' are not valid",
        ),
        (["sql", "select 1", "--format", "parquet"], "needs an output file"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["--project-dir", str(tmp_path / "p"), *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 1 and expected in err, (args, err)


def test_ingest_reports_failed_files_with_exit_2(tmp_path: Path) -> None:
    cli("init", "p", cwd=tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.csv").write_text("a,b\n1,2,3\n")
    result = cli("ingest", str(tmp_path / "in"), "--into", "dev.bronze.t", cwd=tmp_path / "p")
    assert result.returncode == 2 and "failed:" in result.stdout and "bad.csv" in result.stdout
