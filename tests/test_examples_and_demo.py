"""The README's examples and the demo run for real."""

from __future__ import annotations

import io
import runpy
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
    # running it again starts from scratch and gives the same result
    again = io.StringIO()
    run_demo(tmp_path / "demo", Console(file=again, width=200))
    assert "9,430 quarantined" in again.getvalue()
