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
    # training, registry, deployment through dev's policy, copy to staging
    assert "registered dev.ml.flight_delay v1" in text
    assert "validation pass: lineage" in text and "deployment: " in text
    assert "copied to staging as staging.ml.flight_delay v1" in text
    lineage = ws.models.lineage("dev.ml.flight_delay/1")
    assert lineage.commit and lineage.data_versions == {"dev.silver.flights": 0}
    assert "alias.moved" in text and "model_version.created" in text
    # jobs: deployed with a development-mode name, run, and fired again by a table update
    assert '+ job refresh_gold as "[dev ' in text
    assert "task values {'carriers': 16}" in text
    assert "trigger table_update:dev.silver.airlines fired run 2: succeeded" in text
    # feature store: point-in-time training, online scoring equal to point-in-time
    assert "same as point-in-time at the newest rows" in text
    # serving: keys in, a clear 400, a hot swap without failures, the inference table
    assert "keys only -> weather looked up online -> 200" in text
    assert "a request without its keys -> 400: Model is missing inputs ['origin']" in text
    assert "swapped while serving" in text and " 0 failed" in text
    log = ws.sql(
        "SELECT model_version, count(*) AS n FROM dev.serving.departure_delay_requests "
        "GROUP BY 1 ORDER BY 1"
    ).to_pylist()
    assert [row["model_version"] for row in log] == ["1", "2"]
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
