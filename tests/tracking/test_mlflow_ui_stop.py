"""``lakeforge mlflow ui`` stops, with every process MLflow started, on one SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import stop_group
from tests.serving.conftest import free_port


def _marked(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment holds ``marker``: the UI's whole tree."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker.encode() not in environ.read_bytes():
                continue
            state = (environ.parent / "stat").read_text().rpartition(")")[2].split()[0]
            if state != "Z":
                found.append(int(environ.parent.name))
    return found


@pytest.mark.slow
def test_one_sigterm_stops_the_ui_and_all_its_processes(project_dir: Path) -> None:
    port, marker = free_port(), f"LAKEFORGE_UI_TEST={uuid.uuid4().hex}"
    name, value = marker.split("=")
    ui = subprocess.Popen(
        [sys.executable, "-m", "lakeforge", "--project-dir", str(project_dir)]
        + ["mlflow", "ui", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, name: value, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,  # the test's own cleanup can reach every process
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                assert ui.poll() is None, "lakeforge mlflow ui exited before it answered"
                assert time.monotonic() < deadline, "lakeforge mlflow ui did not answer"
                time.sleep(0.5)
        running = _marked(marker)
        assert ui.pid in running and len(running) >= 3  # MLflow's server and its workers

        ui.send_signal(signal.SIGTERM)  # once, to the lakeforge process alone
        try:
            ui.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"one SIGTERM did not stop lakeforge mlflow ui: {_marked(marker)}")
        assert _marked(marker) == []  # nothing it started outlives it
    finally:
        stop_group(ui)
