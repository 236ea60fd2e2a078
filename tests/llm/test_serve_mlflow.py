"""``provider: mlflow`` routes, MLflow traces and the log's flush settings, through the real
``openai`` client against ``lakeforge serve``.

One server for the module: the pyfuncs of :mod:`tests.llm.echo_model` are registered in
the project's dev target; an OpenAI route over a fake upstream (which fails once, echoing
the planted API key in its error) records traces too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pandas as pd
import pytest
from mlflow.models import infer_signature

import lakeforge
from lakeforge.llm import count_tokens
from lakeforge.llm._mlflow_provider import text_of
from lakeforge.llm._traces import experiment_name
from lakeforge.testing.fake_openai import FakeOpenAI
from tests.llm.echo_model import ChatCompletionModel, EchoChat
from tests.llm.llm_server import KEY_ENV, TOKEN, LLMServer, llm_project

SECRET = "sk-planted-mlflow-5e8d1c"
EXTRA = """
  local:
    type: chat
    models:
      - {{name: echo, provider: mlflow, model: llm.echo@champion}}
      - {{name: fixed, provider: mlflow, model: llm.fixed/1}}
    traces: true
    logging: {{flush_interval_s: 3600, flush_rows: 1}}
  local_complete:
    type: completions
    models:
      - {{name: echo, provider: mlflow, model: llm.prompted/1}}
  traced:
    type: chat
    models:
      - {{name: up, provider: openai, model: gpt-4o-mini, base_url: "{url}",
         api_key: {{env: {env}}}, max_retries: 1, backoff_s: 0.01}}
    traces: true
"""


class Served:
    def __init__(self, project: Path, server: LLMServer, fake: FakeOpenAI) -> None:
        self.project, self.server, self.fake = project, server, fake
        self.client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with FakeOpenAI(api_key=SECRET) as fake:
        extra = EXTRA.format(url=fake.url, env=KEY_ENV)
        project = llm_project(tmp_path_factory.mktemp("llm"), fake.url, extra)
        chat = infer_signature({"messages": [{"role": "user", "content": "hi"}]}, "ok")
        prompt = infer_signature({"prompt": "hi"}, "ok")
        with lakeforge.connect("dev", project_dir=project) as ws:
            with ws.start_run("llm", autolog=False):
                ws.log_model(EchoChat(), "llm.echo", signature=chat)
                ws.log_model(EchoChat(), "llm.prompted", signature=prompt)
                ws.log_model(ChatCompletionModel(), "llm.fixed", signature=chat)
            ws.models.set_alias("llm.echo", "champion", 1)
        server = LLMServer(project, SECRET)
        try:
            server.wait_ready()
            yield Served(project, server, fake)
        finally:
            server.stop()


def _until(check: Any, what: str, timeout_s: float = 60) -> Any:
    """Poll ``check()`` until it returns something truthy (the server writes in the
    background); fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what} did not appear within {timeout_s:.0f} s")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("plain", ("plain", None)),
        (["first", "second"], ("first", None)),
        (pd.Series(["series"]), ("series", None)),
        (pd.DataFrame({"answer": ["frame"]}), ("frame", None)),
        (
            {"choices": [{"message": {"content": "chat"}}], "usage": {"total_tokens": 3}},
            ("chat", {"total_tokens": 3}),
        ),
        ({"output": [{"content": [{"type": "output_text", "text": "agent"}]}]}, ("agent", None)),
    ],
)
def test_what_a_pyfunc_may_return(output: Any, expected: tuple[str, Any]) -> None:
    assert text_of(output) == expected


@pytest.mark.parametrize("output", [None, 3, {"answer": "x"}, [], [{"no": "text"}]])
def test_a_pyfunc_output_without_text_is_refused(output: Any) -> None:
    with pytest.raises(TypeError):
        text_of(output)


@pytest.mark.slow
def test_a_registered_pyfunc_answers_chat_and_the_gateway_counts_its_tokens(
    served: Served,
) -> None:
    answer = served.client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "hello there"}]
    )
    assert answer.choices[0].message.content == "echo: hello there"
    assert answer.usage is not None  # the model reported none: the gateway counted
    assert answer.usage.completion_tokens == count_tokens("echo: hello there")
    assert answer.usage.prompt_tokens == count_tokens("hello there")


@pytest.mark.slow
def test_a_registered_pyfunc_streams_and_completes(served: Served) -> None:
    chunks = served.client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "streamed"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: streamed"
    completion = served.client.completions.create(model="local_complete", prompt="say it")
    assert completion.choices[0].text == "echo: say it"


@pytest.mark.slow
def test_a_failing_pyfunc_falls_back_and_its_usage_is_kept(served: Served) -> None:
    answer = served.client.chat.completions.create(
        model="local", messages=[{"role": "user", "content": "fail"}]
    )
    assert answer.choices[0].message.content == "fixed"  # the second route answered
    assert answer.usage is not None and answer.usage.completion_tokens == 22


@pytest.mark.slow
def test_flush_rows_moves_rows_to_delta_while_serving(served: Served) -> None:
    raw = served.client.chat.completions.with_raw_response.create(
        model="local", messages=[{"role": "user", "content": "logged"}]
    )
    request_id = raw.headers["x-request-id"]

    def logged() -> bool:
        with lakeforge.connect("dev", project_dir=served.project) as ws:
            if not ws.tables.exists("serving.local_llm_requests"):
                return False
            rows = ws.tables.read("serving.local_llm_requests", format="pandas")
        return request_id in set(rows.request_id)

    # flush_interval_s is an hour: only flush_rows: 1 can have written it
    _until(logged, f"request {request_id} in serving.local_llm_requests")


def _trace(project: Path, endpoint: str, request_id: str) -> Any:
    from lakeforge.tracking import client_for

    with lakeforge.connect("dev", project_dir=project) as ws:
        client = client_for(ws.target)

    def find() -> Any:
        experiment = client.get_experiment_by_name(experiment_name(endpoint))
        if experiment is None:
            return None
        found = client.search_traces(
            locations=[experiment.experiment_id],
            filter_string=f"tags.`lakeforge.request_id` = '{request_id}'",
        )
        return client.get_trace(found[0].info.trace_id) if found else None

    return _until(find, f"the trace of request {request_id}")


@pytest.mark.slow
def test_each_request_is_traced_with_a_span_per_attempt_and_no_secret(served: Served) -> None:
    served.fake.fail(500, times=1, echo_auth=True)  # the upstream echoes the key back
    raw = served.client.chat.completions.with_raw_response.create(
        model="traced", messages=[{"role": "user", "content": "trace me"}], user="carol"
    )
    assert raw.parse().choices[0].message.content == "trace me"
    trace = _trace(served.project, "traced", raw.headers["x-request-id"])
    spans = trace.data.spans
    root = next(s for s in spans if s.parent_id is None)
    attempts = sorted(
        (s for s in spans if s.parent_id == root.span_id), key=lambda s: s.start_time_ns
    )
    assert root.name == "traced"
    assert root.attributes["lakeforge.status"] == 200
    assert root.attributes["lakeforge.route"] == "up"
    assert root.attributes["lakeforge.provider"] == "openai"
    assert root.attributes["lakeforge.user"] == "carol"
    assert root.attributes["lakeforge.attempts"] == 2
    assert root.attributes["lakeforge.output_tokens"] == 2
    assert [a.attributes["lakeforge.status"] for a in attempts] == [500, 200]
    assert attempts[0].attributes["lakeforge.error"] == "HTTP 500"
    assert attempts[1].attributes["lakeforge.output_tokens"] == 2
    assert all(a.attributes["lakeforge.latency_ms"] >= 0 for a in attempts)
    dumped = json.dumps(trace.to_dict(), default=str)
    assert "trace me" in dumped  # the request is there...
    assert SECRET not in dumped  # ...the key the upstream echoed is not


@pytest.mark.slow
def test_a_pyfunc_request_is_traced_too(served: Served) -> None:
    raw = served.client.chat.completions.with_raw_response.create(
        model="local", messages=[{"role": "user", "content": "fail"}]
    )
    trace = _trace(served.project, "local", raw.headers["x-request-id"])
    children = [s for s in trace.data.spans if s.parent_id is not None]
    assert sorted(s.name for s in children) == ["echo", "fixed"]
    failed = next(s for s in children if s.name == "echo")
    assert failed.attributes["lakeforge.provider"] == "mlflow"
    assert "secret internal detail" not in json.dumps(trace.to_dict(), default=str)


def test_a_model_that_is_not_registered_fails_naming_it(tmp_path: Path) -> None:
    import asyncio

    from lakeforge.llm import GatewayEndpoint
    from lakeforge.project import LLMEndpointSpec

    project = lakeforge.init_project("empty", tmp_path)
    with lakeforge.connect("dev", project_dir=project) as ws:
        target = ws.target
    spec = LLMEndpointSpec.model_validate(
        {"models": [{"name": "m", "provider": "mlflow", "model": "llm.missing@champion"}]}
    )
    gateway = GatewayEndpoint("local", spec, target=target)

    async def call() -> Any:
        try:
            return await gateway.chat(
                {"messages": [{"role": "user", "content": "x"}]}, user=None, request_id="r"
            )
        finally:
            await gateway.aclose()

    result = asyncio.run(call())
    assert result.status == 502
    assert "llm.missing@champion could not be loaded" in result.error
    with pytest.raises(ValueError, match="needs the target whose registry"):
        GatewayEndpoint("local", spec)
