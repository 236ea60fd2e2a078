"""Step 11: a versioned prompt, an LLM endpoint in `lakeforge serve` over a local fake
provider (OpenAI's protocol), and the requests, usage and cost in Delta."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace
from lakeforge.demo._data import show, start_lakeforge
from lakeforge.errors import LakeforgeError

PROMPT = "dev.prompts.flight_help"
LOG_TABLE = "dev.serving.assistant_requests"
KEY_ENV = "DEMO_LLM_API_KEY"  # the provider's key, referenced by name in lakeforge.yaml
ENDPOINT = """
llm_endpoints:
  flight_assistant:
    type: chat
    prompt: prompts.flight_help@production
    models:
      - {{name: small, provider: openai, model: fake-small, base_url: "{url}",
         api_key: {{env: {key}}}, weight: 80, price: {{input_per_1m: 0.15, output_per_1m: 0.60}}}}
      - {{name: large, provider: openai, model: fake-large, base_url: "{url}",
         api_key: {{env: {key}}}, weight: 20, price: {{input_per_1m: 2.50, output_per_1m: 10.0}}}}
    rate_limits: {{requests_per_minute: 600, per_user: {{requests_per_minute: 100}}}}
    log_table: serving.assistant_requests
"""
_FAILURE = {
    "status": 503,
    "times": 1,
    "retry_after": None,
    "message": "overloaded",
    "echo_auth": False,
    "path": None,
}
QUESTIONS = [
    "Which airport had the most delayed departures?",
    "Is an evening flight from EWR likely to be late?",
    "How long is the flight from JFK to LAX?",
]


def llm_gateway(ws: Workspace, console: Console, provider_url: str) -> None:
    """Register and release a prompt, serve it through the gateway over the provider at
    ``provider_url`` (the fake one: :func:`fake_provider`), read the logs."""
    console.print(Rule("11. LLM gateway: a versioned prompt, an OpenAI-compatible endpoint"))
    ws.prompts.register(PROMPT, "You answer questions about New York flights.")
    ws.prompts.register(
        PROMPT,
        "You answer questions about New York flights in 2013. Answer in one sentence.",
        commit_message="shorter answers",
    )
    ws.prompts.set_alias(PROMPT, "production", 2)
    console.print(f"  prompt {PROMPT}: 2 versions, @production -> v2; the change:")
    for line in ws.prompts.diff(f"{PROMPT}/1", f"{PROMPT}/2").splitlines()[2:]:
        console.print(f"    {line}", markup=False, highlight=False)
    with (ws.project.directory / "lakeforge.yaml").open("a") as handle:
        handle.write(ENDPOINT.format(url=provider_url, key=KEY_ENV))
    url, server = _serve(ws)
    try:
        answers = [
            _chat(url, question, user)
            for question in QUESTIONS
            for user in ("ada", "grace", "linus")
        ]
        console.print(
            f"  POST {url}/v1/chat/completions, 9 questions from 3 users: "
            f"'{answers[0]['choices'][0]['message']['content'][:60]}...'"
        )
        _post(provider_url.removesuffix("/v1") + "/_fake/fail", _FAILURE)
        retried = _chat(url, QUESTIONS[0], "ada")
        console.print(f"  a provider 503 is retried: the client gets {retried['object']}")
    finally:
        server.send_signal(signal.SIGTERM)  # drains, then flushes the LLM log
        server.wait(timeout=60)
    show(
        console,
        ws,
        "Requests through the gateway (Delta): route, prompt version, tokens, cost",
        f"""
        SELECT route, model, prompt, count(*) AS requests, sum(attempts) AS attempts,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               round(sum(cost), 6) AS cost_usd
        FROM {LOG_TABLE} GROUP BY ALL ORDER BY route""",
    )
    show(
        console,
        ws,
        "Usage per user",
        f"""
        SELECT "user", sum(requests) AS requests, sum(input_tokens + output_tokens) AS tokens,
               round(sum(cost), 6) AS cost_usd
        FROM {LOG_TABLE}_usage GROUP BY ALL ORDER BY 1""",
    )


def fake_provider() -> tuple[subprocess.Popen[str], str]:
    """Lakeforge's fake OpenAI-protocol server (what its tests use), standing in for a
    provider; it prints its URL first."""
    provider = subprocess.Popen(
        [sys.executable, "-m", "lakeforge.testing.fake_openai", "--parent", str(os.getpid())],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert provider.stdout is not None
    url = provider.stdout.readline().strip()
    if not url.startswith("http://"):
        provider.kill()
        raise LakeforgeError(f"the fake LLM provider did not start (said {url!r})")
    return provider, url


def _serve(ws: Workspace) -> tuple[str, subprocess.Popen[bytes]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = ws.project.directory / "serve_llm.log"
    env = {**os.environ, KEY_ENV: "sk-demo-not-a-real-key"}
    server = start_lakeforge(
        ws,
        log.name,
        *("serve", "-e", "flight_assistant", "--port", str(port), "--workers", "1"),
        env=env,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as answer:
                if answer.status == 200:
                    return url, server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise LakeforgeError(f"`lakeforge serve` did not start: {log.read_text()[-2000:]}")
        time.sleep(0.3)


def _chat(url: str, question: str, user: str) -> Any:
    body = {
        "model": "flight_assistant",
        "messages": [{"role": "user", "content": question}],
        "user": user,
    }
    return _post(url + "/v1/chat/completions", body)


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise LakeforgeError(
            f"the LLM endpoint answered {exc.code}: {exc.read()[:500]!r}"
        ) from None
