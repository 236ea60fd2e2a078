"""``lakeforge score`` as a user runs it: a summary line, reruns that skip, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

import lakeforge
from lakeforge.cli import main

TABLE = "dev.silver.numbers"
ROWS = 500


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with ``ml.double`` (x * 2; raises on x = -1) and a table to score."""
    from tests.inference.models import Doubler

    folder = lakeforge.init_project("cli", tmp_path_factory.mktemp("score_cli"))
    x = [float(i) for i in range(ROWS)]
    x[7] = -1.0
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.tables.write(TABLE, pa.table({"id": list(range(ROWS)), "x": x}), primary_keys=["id"])
        with ws.start_run("train", autolog=False):
            ws.log_model(Doubler(), "ml.double", input_example=pd.DataFrame({"x": [1.0]}))
        ws.models.set_alias("ml.double", "champion", 1)
    return folder


def run(capsys: pytest.CaptureFixture[str], project: Path, *args: str) -> tuple[int, str]:
    """Exit code and stdout + stderr (whitespace collapsed: Rich wraps long lines)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), *args])
    out = capsys.readouterr()
    code = exit_info.value.code
    return code if isinstance(code, int) else 1, " ".join((out.out + out.err).split())


def test_score_a_table_then_again(capsys: pytest.CaptureFixture[str], project: Path) -> None:
    args = ("score", "models:/ml.double@champion", "--input", TABLE, "--output", "dev.gold.cli")
    code, out = run(capsys, project, *args, "--quiet")
    assert code == 0, out
    assert (
        f"scored {ROWS - 1:,} rows, 1 failed (see dev.gold.cli_errors) → dev.gold.cli@v0 "
        "with dev.ml.double v1 @champion" in out
    )
    assert "rows/s" in out
    code, out = run(capsys, project, *args)
    assert code == 0 and "scored 0 rows" in out and "1 chunk(s) already scored, skipped" in out


def test_sql_into_a_file_and_fail_fast(
    capsys: pytest.CaptureFixture[str], project: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "doubled.csv"
    query = f"SELECT id, x FROM {TABLE} WHERE id < 100"
    code, out = run(
        capsys,
        project,
        "score",
        "ml.double/1",
        "--sql",
        query,
        "--output",
        str(out_file),
        "--keep-columns",
        "--prediction",
        "doubled",
    )
    assert code == 0, out
    assert "scored 99 rows, 1 failed (see" in out and "doubled_errors.csv" in out
    assert out_file.read_text().splitlines()[0].startswith('"id","x","doubled"')
    code, out = run(
        capsys,
        project,
        "score",
        "ml.double/1",
        "--sql",
        query,
        "--output",
        "dev.gold.x",
        "--fail-fast",
    )
    assert code != 0 and "fail_fast" in out and "out of the model's domain" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--input", TABLE, "--sql", "SELECT 1"],
            "give exactly one of --input TABLE or --sql QUERY (both were given)",
        ),
        ([], "give exactly one of --input TABLE or --sql QUERY"),
        (["--input", TABLE, "--engine", "spark"], "unknown scoring engine 'spark'; engines:"),
        (["--input", TABLE, "--features", "cache"], "allowed: offline, online"),
    ],
)
def test_bad_options_are_refused(
    capsys: pytest.CaptureFixture[str], project: Path, extra: list[str], message: str
) -> None:
    code, out = run(capsys, project, "score", "ml.double/1", "--output", "dev.gold.y", *extra)
    assert code != 0 and message in out
