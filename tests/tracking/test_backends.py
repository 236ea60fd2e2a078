"""The same tracking and registry on MLflow's production backends: PostgreSQL and a server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import lakeforge
from tests.conftest import stop_group

X = pd.DataFrame({"dep_delay": [0.0, 5.0, 30.0, 90.0]})


def project_with(folder: Path, dev_tracking: str, staging_tracking: str | None = None) -> Path:
    folder.mkdir(parents=True)
    staging = f"\n    mlflow_tracking_uri: {staging_tracking}" if staging_tracking else ""
    (folder / "lakeforge.yaml").write_text(
        f"name: backends\ntargets:\n  dev:\n    mlflow_tracking_uri: {dev_tracking}\n"
        f"  staging:\n    promote_from: [dev]{staging}\n"
    )
    return folder


def train_and_register(project: Path, name: str) -> str:
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.tables.write("dev.silver.t", pd.DataFrame({"dep_delay": [0.0, 90.0]}), mode="overwrite")
        with ws.start_run("train", autolog=False):
            ws.tables.read("dev.silver.t")
            model = LogisticRegression().fit(X, [0, 0, 1, 1])
            version = ws.log_model(model, name, input_example=X.head(2))
        ws.models.set_alias(name, "champion", version.version, reason="test")
        assert ws.models.lineage(f"{name}@champion").data_versions == {"dev.silver.t": 0}
        return str(version.version)


@pytest.mark.postgres
def test_postgresql_backend_store(tmp_path: Path, pg_url: str) -> None:
    project = project_with(tmp_path / "p", pg_url)
    assert train_and_register(project, "dev.ml.pg") == "1"
    with lakeforge.connect("dev", project_dir=project) as ws:
        assert ws.models.history("dev.ml.pg")[0].to_version == 1
        copied = ws.models.copy("dev.ml.pg/1", to="staging")
    assert copied.tags["lakeforge.copied_from"] == "dev.ml.pg/1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real ``mlflow server`` on loopback, stopped after the test."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        start_new_session=True,  # its uvicorn workers and job consumer stop with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow server did not start")
                time.sleep(0.5)
        yield url
    finally:
        stop_group(server)


@pytest.mark.slow
def test_remote_tracking_server_and_copy_to_a_separate_store(
    tmp_path: Path, mlflow_server: str
) -> None:
    project = project_with(tmp_path / "p", mlflow_server)
    assert train_and_register(project, "dev.ml.remote") == "1"
    with lakeforge.connect("dev", project_dir=project) as ws:
        assert ws.models.versions("dev.ml.remote")[0].run_id
        copied = ws.models.copy("dev.ml.remote@champion", to="staging")  # server -> local SQLite
    assert (
        copied.name == "staging.ml.remote"
        and copied.tags["lakeforge.copied_from"] == "dev.ml.remote/1"
    )


@pytest.mark.slow
def test_mlflow_ui_serves_the_targets_store(ml_project: Path) -> None:
    with (
        lakeforge.connect("dev", project_dir=ml_project) as ws,
        ws.start_run("ui-check", autolog=False),
    ):
        pass
    port = free_port()
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lakeforge",
            "--project-dir",
            str(ml_project),
            "-t",
            "dev",
            "mlflow",
            "ui",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=50"
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                if ui.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("lakeforge mlflow ui did not start")
                time.sleep(0.5)
        assert "mlproj/ui-check" in body  # the experiments of dev's own store
    finally:
        stop_group(ui)
