"""``lakeforge sql`` output of nested values (lists, structs, maps) in every text format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from lakeforge.cli import main

NESTED = (
    "SELECT 1 AS id, [1, 2] AS xs, {'a': 'x,y', 'b': NULL} AS s, MAP {'k': [3]} AS m, "
    "['q\"uote'] AS words, NULL::INTEGER[] AS none"
)


def _sql(project: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--project-dir", str(project), "sql", *args])
    out = capsys.readouterr()
    assert exit_info.value.code == 0, out.err
    return out.out


def test_csv_renders_nested_values_as_json_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["init", "p", "--dir", str(tmp_path)])
    capsys.readouterr()
    project = tmp_path / "p"
    rows = list(csv.DictReader(io.StringIO(_sql(project, capsys, NESTED, "--format", "csv"))))
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == "1" and row["none"] == ""
    assert json.loads(row["xs"]) == [1, 2]
    assert json.loads(row["s"]) == {"a": "x,y", "b": None}
    assert json.loads(row["m"]) == {"k": [3]}
    assert json.loads(row["words"]) == ['q"uote']
    out = tmp_path / "nested.csv"
    _sql(project, capsys, NESTED, "--format", "csv", "-o", str(out))
    assert list(csv.DictReader(io.StringIO(out.read_text()))) == rows
    # JSON keeps the structure itself
    [record] = json.loads(_sql(project, capsys, NESTED, "--format", "json"))
    assert record["xs"] == [1, 2] and record["m"] == {"k": [3]}
    assert "[1, 2]" in _sql(project, capsys, NESTED)
