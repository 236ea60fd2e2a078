"""A served project: LightGBM and scikit-learn models on flights, and a live server helper."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import lakeforge
from tests.conftest import git_init, stop_group

FEATURES = ["month", "day", "dep_time", "sched_dep_time", "distance", "hour"]
ENDPOINTS = """
endpoints:
  delay:
    served_entities:
      - {model: ml.delay, alias: champion, traffic: 100}
    inference_table: {table: serving.delay_requests, sample: 0.5, flush_interval_s: 0.3}
    poll_interval_s: 0.5
  split:
    served_entities:
      - {model: ml.delay, version: 1, traffic: 50, name: first}
      - {model: ml.delay, version: 2, traffic: 50, name: second}
    shadow: {model: ml.pipe, alias: champion, name: shadowed}
    inference_table: {table: serving.split_requests, flush_interval_s: 0.3}
  pipe:
    served_entities:
      - {model: ml.pipe, alias: champion}
    auth: {token_sha256: ["%s"]}
    timeout_s: 5
    max_payload_mb: 0.01
  crash:
    served_entities:
      - {model: ml.delay, version: 1}
    inference_table: {table: serving.crash_requests, flush_interval_s: 3600, flush_rows: 1000000}
  slow:
    served_entities:
      - {model: ml.flaky, alias: champion}
    inference_table: {table: serving.slow_requests, flush_interval_s: 3600}
  flaky:
    served_entities:
      - {model: ml.flaky, alias: champion}
    timeout_s: 1
"""
TOKEN = "s3cret-token"


def frame(flights: pa.Table, n: int = 2000) -> Any:
    data = flights.select([*FEATURES, "arr_delay"]).slice(0, n).to_pandas().dropna()
    data[FEATURES] = data[FEATURES].astype("float64")
    return data


@pytest.fixture(scope="session")
def served_project(tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table) -> Path:
    """A project with ml.delay v1, v2 (LightGBM; champion -> v1) and ml.pipe (sklearn)."""
    import hashlib

    import lightgbm as lgb
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folder = lakeforge.init_project("served", tmp_path_factory.mktemp("serve"))
    with (folder / "lakeforge.yaml").open("a") as handle:
        handle.write(ENDPOINTS % hashlib.sha256(TOKEN.encode()).hexdigest())
    git_init(folder)
    data = frame(all_flights)
    X, y = data[FEATURES], (data["arr_delay"] > 15).astype(int)
    with lakeforge.connect("dev", project_dir=folder) as ws:
        for trees in (20, 40):
            with ws.start_run("train", autolog=False):
                model = lgb.LGBMClassifier(n_estimators=trees, verbose=-1).fit(X, y)
                ws.log_model(model, "ml.delay", input_example=X.head(3))
        with ws.start_run("train", autolog=False):
            pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
            ws.log_model(pipe, "ml.pipe", input_example=X.head(3))
            import pandas as pd

            from tests.serving.flaky import Flaky

            example = pd.DataFrame({"x": [1.0, 2.0]})
            ws.log_model(Flaky(), "ml.flaky", input_example=example)
        ws.models.set_alias("ml.flaky", "champion", 1)
        ws.models.set_alias("ml.delay", "champion", 1)
        ws.models.set_alias("ml.pipe", "champion", 1)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A ``lakeforge serve`` subprocess on loopback."""

    def __init__(
        self, project: Path, *args: str, workers: int = 1, env: dict[str, str] | None = None
    ) -> None:
        self.project = project
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {"MLFLOW_DISABLE_TELEMETRY": "true", "LAKEFORGE_TARGET": "dev"}
        env = os.environ | base | (env or {})
        self.log = project / f"serve-{self.port}.log"
        self._out = self.log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lakeforge",
                "--project-dir",
                str(project),
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                *args,
            ],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready: {self.log.read_text()[-3000:]}")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        return self.request("POST", path, json.dumps(payload).encode(), headers)

    def stop(self) -> None:
        stop_group(self.process)
        self._out.close()


@pytest.fixture
def start_server(served_project: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(*args: str, workers: int = 1, ready: bool = True) -> Server:
        server = Server(served_project, *args, workers=workers)
        servers.append(server)
        if ready:
            server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
