"""Global options (-t/--target, --project-dir) go before or after the command, as users write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakeforge.cli import hoist_global_options, main


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["deploy", "-t", "prod"], ["-t", "prod", "deploy"]),
        (["run", "job", "--target=dev"], ["--target=dev", "run", "job"]),
        (["serve", "-tstaging", "--port", "1"], ["-tstaging", "serve", "--port", "1"]),
        (
            ["tables", "list", "--project-dir", "p", "-t", "dev"],
            ["--project-dir", "p", "-t", "dev", "tables", "list"],
        ),
        (
            ["-t", "dev", "sql", "select 1", "--", "-t", "x"],
            ["-t", "dev", "sql", "select 1", "--", "-t", "x"],
        ),
        (["sql", "select '-t'"], ["sql", "select '-t'"]),
    ],
)
def test_global_options_are_moved_to_the_front(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_info.value.code or 0), out.out, out.err


def test_target_after_the_subcommand_acts_on_that_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, "init", "p", "--dir", str(tmp_path))
    project = str(tmp_path / "p")
    code, _, err = _run(
        capsys,
        "sql",
        "create table staging.gold.t as select 1 as x",
        "--write",
        "-t",
        "staging",
        "--project-dir",
        project,
    )
    assert code == 0, err
    code, out, err = _run(capsys, "tables", "list", "--target", "staging", "--project-dir", project)
    assert code == 0 and "staging.gold.t" in out, err
    code, out, _ = _run(capsys, "tables", "list", "-t", "dev", "--project-dir", project)
    assert "staging.gold.t" not in out


def test_unknown_target_names_where_it_came_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(capsys, "init", "p", "--dir", str(tmp_path))
    project = str(tmp_path / "p")
    monkeypatch.setenv("LAKEFORGE_TARGET", "Dev")
    code, _, err = _run(capsys, "--project-dir", project, "tables", "list")
    assert code == 1 and "unknown target 'Dev' (from LAKEFORGE_TARGET)" in err, err
    code, _, err = _run(capsys, "--project-dir", project, "tables", "list", "-t", "qa")
    assert code == 1 and "unknown target 'qa' (from --target)" in err, err


def test_help_shows_flags_without_a_type(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--help"], ["sql", "--help"], ["tables", "vacuum", "--help"]):
        code, out, _ = _run(capsys, *args)
        assert code == 0 and "--help" in out and "<bool>" not in out, args
