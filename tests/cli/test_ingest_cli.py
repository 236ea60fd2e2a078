"""``lakeforge ingest`` as a newcomer meets it: reruns, the checkpoint commands, clean output."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from rich.console import Console

import lakeforge
from lakeforge.cli import _ingest, main

TABLE = "dev.bronze.flights"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return lakeforge.init_project("p", tmp_path)


@pytest.fixture
def landing(tmp_path: Path, flights: pa.Table) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for day in (1, 2):
        part = flights.filter(pc.equal(flights.column("day"), day))
        pacsv.write_csv(part, folder / f"flights_{day:02d}.csv")
    return folder


def run(capsys: pytest.CaptureFixture[str], project: Path, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr (whitespace collapsed: Rich wraps long lines)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), *args])
    out = capsys.readouterr()
    code = exit_info.value.code
    return (
        code if isinstance(code, int) else 1,
        " ".join(out.out.split()),
        " ".join(out.err.split()),
    )


def test_wrong_format_then_right_format_loads_the_table_and_exits_0(
    capsys: pytest.CaptureFixture[str], project: Path, landing: Path
) -> None:
    code, out, _ = run(capsys, project, "ingest", str(landing), "--into", TABLE, "--format", "json")
    assert code == 2 and "2 failed" in out and f"failed: {landing / 'flights_01.csv'}" in out
    code, out, _ = run(capsys, project, "ingest", str(landing), "--into", TABLE)
    assert code == 0 and "loaded 2 file(s), 1,785 rows; skipped 0 already ingested" in out
    code, out, _ = run(capsys, project, "ingest", str(landing), "--into", TABLE)
    assert code == 0 and "loaded 0 file(s), 0 rows; skipped 2 already ingested" in out


def test_reruns_report_a_failed_file_and_exit_2_until_it_is_fixed(
    capsys: pytest.CaptureFixture[str], project: Path, landing: Path
) -> None:
    bad = landing / "flights_03.csv"
    bad.write_text("a,b\n1,2,3\n")
    for _ in range(2):
        code, out, _ = run(capsys, project, "ingest", str(landing), "--into", TABLE)
        assert code == 2 and f"failed: {bad}: " in out and "Expected 2 columns, got 3" in out
        assert f"lakeforge ingest retry {TABLE}" in out
    bad.unlink()
    assert run(capsys, project, "ingest", str(landing), "--into", TABLE)[0] == 0


def test_status_retry_and_forget(
    capsys: pytest.CaptureFixture[str], project: Path, landing: Path, flights: pa.Table
) -> None:
    bad = landing / "flights_03.csv"
    bad.write_text("a,b\n1,2,3\n")
    assert run(capsys, project, "ingest", str(landing), "--into", TABLE)[0] == 2
    code, out, _ = run(capsys, project, "ingest", "status", TABLE)
    assert code == 0 and "2 file(s) loaded (1,785 rows), 1 failed, 0 changed after loading" in out
    assert "Expected 2 columns, got 3" in out and "flights_01.csv" in out
    code, out, _ = run(capsys, project, "ingest", "retry", TABLE)
    assert code == 2 and f"failed: {bad}" in out
    pacsv.write_csv(flights.filter(pc.equal(flights.column("day"), 2)), bad)
    code, out, _ = run(capsys, project, "ingest", "retry", TABLE)
    assert code == 0 and "loaded 1 file(s)" in out
    first = str(landing / "flights_01.csv")
    code, out, _ = run(capsys, project, "ingest", "forget", TABLE, first)
    assert code == 0 and f"forgot 1 file(s); the next run loads them again {first}" in out
    code, out, _ = run(capsys, project, "ingest", "--into", TABLE, str(landing))  # options first
    assert code == 0 and "loaded 1 file(s)" in out and "skipped 2 already ingested" in out
    code, _, err = run(capsys, project, "ingest", "forget", TABLE, "nope.csv")
    assert code == 1 and f"not in the ingest checkpoint of {TABLE}: nope.csv" in err


def test_a_source_named_like_a_subcommand_is_given_as_a_path(
    capsys: pytest.CaptureFixture[str],
    project: Path,
    landing: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    landing.rename(landing.parent / "status")
    monkeypatch.chdir(landing.parent)
    code, out, _ = run(capsys, project, "ingest", "./status", "--into", TABLE)
    assert code == 0 and "loaded 2 file(s)" in out
    code, out, _ = run(capsys, project, "ingest", "load", "./status", "--into", TABLE)
    assert code == 0 and "skipped 2 already ingested" in out


def test_unsupported_files_are_reported_and_a_named_one_is_an_error(
    capsys: pytest.CaptureFixture[str], project: Path, landing: Path
) -> None:
    photo = landing / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0")
    code, out, _ = run(capsys, project, "ingest", str(landing), "--into", TABLE)
    assert code == 0 and "loaded 2 file(s)" in out and "1 unsupported" in out
    assert f"skipped: {photo}: unsupported file type (.jpg); supported: .csv" in out
    code, _, err = run(capsys, project, "ingest", str(photo), "--into", TABLE)
    assert code == 1 and f"error: cannot ingest {photo}: unsupported file type (.jpg)" in err
    assert ".parquet" in err and "--format" in err


def test_progress_bar_shows_files_and_bytes_on_a_terminal_only(
    capsys: pytest.CaptureFixture[str],
    project: Path,
    landing: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(_ingest, "console", Console(file=screen, force_terminal=True, width=150))
    assert run(capsys, project, "ingest", str(landing), "--into", TABLE)[0] == 0
    assert "2/2 files" in screen.getvalue() and "kB" in screen.getvalue()
    assert "loaded 2 file(s)" in screen.getvalue()
    (landing / "flights_01.csv").rename(landing / "flights_09.csv")
    screen.seek(0)
    screen.truncate()
    assert run(capsys, project, "ingest", str(landing), "--into", TABLE, "--quiet")[0] == 0
    assert "files" not in screen.getvalue() and "loaded 1 file(s)" in screen.getvalue()


def test_piped_ingest_and_sql_print_no_blank_lines_or_warnings(
    project: Path, landing: Path
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lakeforge", *args],
            cwd=project,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            timeout=120,
        )

    ingest = cli("ingest", str(landing), "--into", TABLE)
    assert ingest.returncode == 0 and ingest.stderr == ""
    assert ingest.stdout.splitlines() == [
        f"{TABLE}: loaded 2 file(s), 1,785 rows; skipped 0 already ingested"
    ]
    sql = cli("sql", f"SELECT count(*) AS n FROM {TABLE}", "--format", "csv")
    assert (sql.returncode, sql.stdout, sql.stderr) == (0, '"n"\n1785\n', "")
