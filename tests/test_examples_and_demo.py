"""The README's examples and the demo run for real."""

from __future__ import annotations

import io
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from lakeforge.demo import run_demo

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_example_runs(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(example), run_name="__main__")
    assert "ingested 50000 rows from 1 file(s)" in capsys.readouterr().out


def test_demo_walks_the_lakehouse_on_real_flights(tmp_path: Path) -> None:
    out = io.StringIO()
    ws = run_demo(tmp_path / "demo", Console(file=out, width=200))
    text = out.getvalue()
    assert "+6 file(s), +166,158 rows" in text
    assert "+6 file(s), +170,618 rows, 6 already ingested, 1 failed" in text
    assert "+0 file(s), +0 rows, 13 already ingested" in text
    assert "9,430 quarantined" in text
    assert (
        ws.sql("SELECT sum(flights) AS n FROM dev.gold.carrier_delays").column("n")[0].as_py()
        == 327_346
    )
    # `lakeforge demo` again, as `make demo` runs it, starts from scratch: same result
    again = subprocess.run(
        [sys.executable, "-m", "lakeforge", "demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert again.returncode == 0, again.stderr
    assert (
        "9,430 quarantined" in again.stdout and "registered dev.ml.flight_delay v1" in again.stdout
    )
