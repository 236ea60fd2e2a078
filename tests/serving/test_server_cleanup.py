"""``lakeforge serve`` removes its Prometheus multiprocess folder however it is stopped."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.serving.conftest import Server


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_server_leaves_no_metrics_folder(
    start_server: Callable[..., Server],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
    stop: signal.Signals,
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the server's temporary files go here
    server = start_server("-e", "delay", workers=workers)
    assert len(list(tmp_path.glob("lakeforge-metrics-*"))) == 1  # in use while serving
    assert server.get("/metrics")[0] == 200

    server.process.send_signal(stop)  # to the leader alone, as a supervisor would
    server.process.wait(timeout=60)

    assert list(tmp_path.glob("lakeforge-metrics-*")) == [], server.log.read_text()[-3000:]
