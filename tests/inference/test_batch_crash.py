"""A scoring run killed with SIGKILL mid-way, then rerun: every input row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from lakeforge import Workspace
from tests.conftest import stop_group

ROWS = 600
RUN = """
import sys
import lakeforge

with lakeforge.connect("dev", project_dir=sys.argv[1]) as ws:
    ws.score("ml.double/1", input="dev.silver.xs", output="dev.gold.xs_scores",
             chunk_rows=100, workers=1)
"""


@pytest.mark.slow
def test_a_run_killed_mid_way_completes_on_rerun(sws: Workspace, scoring_project: Path) -> None:
    x = [float(i) for i in range(ROWS)]
    x[150] = x[420] = -1.0  # the model raises on these: they go to the errors table
    sws.tables.write("dev.silver.xs", pa.table({"id": list(range(ROWS)), "x": x}))
    env = {**os.environ, "LF_TEST_SLOW_S": "0.4", "PYTHONPATH": str(Path.cwd())}
    process = subprocess.Popen(
        [sys.executable, "-c", RUN, str(scoring_project)], env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not sws.tables.exists("dev.gold.xs_scores"):  # the first chunk's commit
            assert process.poll() is None, "the scoring process ended before its first commit"
            assert time.monotonic() < deadline, "no chunk committed in 120 s"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        stop_group(process)
    assert process.returncode == -signal.SIGKILL
    partial = sws.tables.read("dev.gold.xs_scores").num_rows
    assert 0 < partial < ROWS - 2  # killed mid-way

    result = sws.score(
        "ml.double/1", input="dev.silver.xs", output="dev.gold.xs_scores", chunk_rows=100
    )
    assert result.chunks_skipped >= 1 and result.rows_in == ROWS
    out = sws.tables.read("dev.gold.xs_scores")
    errors = sws.tables.read("dev.gold.xs_scores_errors")
    ids = sorted(out.column("id").to_pylist())
    assert ids == [i for i in range(ROWS) if i not in (150, 420)]  # no duplicates, no gaps
    assert sorted(json.loads(r)["id"] for r in errors.column("row").to_pylist()) == [150, 420]
    doubled = dict(
        zip(out.column("id").to_pylist(), out.column("prediction").to_pylist(), strict=True)
    )
    assert all(doubled[i] == 2.0 * i for i in ids)
