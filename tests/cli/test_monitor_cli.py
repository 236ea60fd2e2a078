"""``lakeforge monitor list|refresh|show|alerts|report`` on a shifted table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
from typer.testing import CliRunner

import lakeforge
from lakeforge.cli import app

MONITOR = """
monitors:
  shifty:
    table: silver.shifty
    baseline_table: silver.shifty_base
    alerts:
      - name: x_drift
        metric: drift_detected
        column_name: x
        comparator: "=="
        threshold: 1
"""


def data(shift: float, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.normal(shift, 1.0, 2_000), "y": rng.normal(0.0, 1.0, 2_000)})


def run(project: Path, *args: str) -> str:
    result = CliRunner().invoke(
        app, ["--project-dir", str(project), "monitor", *args], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    return re.sub("[│┃]", " ", result.output)  # table cells, space-separated


def test_monitor_commands(tmp_path: Path) -> None:
    project = lakeforge.init_project("mon", tmp_path)
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(MONITOR)
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.tables.write("dev.silver.shifty_base", data(0.0, 1))
        ws.tables.write("dev.silver.shifty", data(0.0, 2))

    assert re.search(r"shifty\s+silver\.shifty\s+snapshot", run(project, "list"))
    assert "alert x_drift" not in run(project, "refresh", "shifty")
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.tables.write("dev.silver.shifty", data(1.5, 3), mode="overwrite")
    refreshed = run(project, "refresh", "shifty", "--full")
    assert "alert x_drift: triggered" in refreshed

    shown = run(project, "show", "shifty")
    assert re.search(r"x\s+\S+\s+[\d.e-]+\s+[\d.e-]+\s+drift", shown)
    assert re.search(r"y\s+\S+\s+[\d.e-]+\s+[\d.e-]+\s+ok", shown)
    assert "no window starting 1999" in run(project, "show", "shifty", "--window", "1999")

    alerts = run(project, "alerts", "shifty")
    assert re.search(r"shifty\s+x_drift\s+triggered", alerts)
    assert "ok -> triggered" in alerts

    out = tmp_path / "r" / "shifty.html"
    assert "written to" in run(project, "report", "shifty", "-o", str(out))
    html = out.read_text()
    assert "x_drift" in html and "<svg" in html and not re.search(r"https?://", html)
