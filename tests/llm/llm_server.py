"""A project with LLM endpoints over a fake upstream, served by ``lakeforge serve``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import lakeforge
from tests.serving.conftest import Server

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


class LLMServer(Server):
    """``lakeforge serve`` of a project in a subprocess, with the upstream's key set."""

    def __init__(self, project: Path, secret: str, *args: str) -> None:
        super().__init__(project, *args, env={KEY_ENV: secret})
