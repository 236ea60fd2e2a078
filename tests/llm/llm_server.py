"""A project with LLM endpoints over a fake upstream, served by ``lakeforge serve``."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import lakeforge
from tests.conftest import stop_group

TOKEN = "token"  # the client's bearer token (what the openai client calls api_key)
KEY_ENV = "LF_TEST_UPSTREAM_KEY"
PROMPT = "You are the support agent of {{product}}. Answer briefly."

LLM_ENDPOINTS = """
llm_endpoints:
  assistant:
    type: chat
    prompt: prompts.support@production
    models:
      - {{name: small, provider: openai, model: gpt-4o-mini, base_url: "{url}",
         api_key: {{env: {env}}}, weight: 100, max_retries: 0,
         price: {{input_per_1m: 150000, output_per_1m: 600000}}}}
    auth: {{token_sha256: ["{token}"]}}
  complete:
    type: completions
    models:
      - {{name: only, provider: openai, model: davinci, base_url: "{url}",
         api_key: {{env: {env}}}}}
    auth: {{token_sha256: ["{token}"]}}
  embed:
    type: embeddings
    models:
      - {{name: minilm, provider: local, model: all-MiniLM-L6-v2}}
    log_table: serving.embed_log
  limited:
    type: chat
    models:
      - {{name: small, provider: openai, model: gpt-4o-mini, base_url: "{url}",
         api_key: {{env: {env}}}}}
    rate_limits: {{requests_per_minute: 1}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def llm_project(folder: Path, upstream_url: str, extra: str = "") -> Path:
    """A new project declaring the endpoints above (plus ``extra`` YAML), with the
    prompt ``prompts.support`` registered and aliased ``production``."""
    project = lakeforge.init_project("llmserved", folder)
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    with (project / "lakeforge.yaml").open("a") as handle:
        handle.write(LLM_ENDPOINTS.format(url=upstream_url, env=KEY_ENV, token=digest) + extra)
    with lakeforge.connect("dev", project_dir=project) as ws:
        version = ws.prompts.register("prompts.support", PROMPT)
        ws.prompts.set_alias("prompts.support", "production", int(version.version))
    return project


class LLMServer:
    """``lakeforge serve`` of a project in a subprocess (its own process group)."""

    def __init__(self, project: Path, secret: str, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project / f"serve-{self.port}.log"
        self._out = self.log.open("wb")
        env = os.environ | {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "LAKEFORGE_TARGET": "dev",
            KEY_ENV: secret,
        }
        command = [sys.executable, "-m", "lakeforge", "--project-dir", str(project), "serve"]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), *args],
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
                with urllib.request.urlopen(self.url + "/health", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM (graceful: the logs are flushed), then SIGKILL if it hangs."""
        stop_group(self.process)
        self._out.close()
