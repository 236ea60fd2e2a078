"""A chain's endpoint does not depend on its LLM to start: warming reads the index and the
prompt but never asks the LLM, a request while the LLM is down answers 503 naming it, and the
same request succeeds once the LLM is back, without a restart. A chain that is broken (a
prompt without its placeholders) still fails to load, with the reason."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lakeforge
from lakeforge.rag import ChainError, log_chain
from lakeforge.serving._entities import load
from lakeforge.serving._protocol import RequestError, parse_mlflow
from lakeforge.testing.fake_openai import FakeOpenAI, FakeOpenAIApp
from tests.rag.conftest import INDEX, PROMPT, TEMPLATE
from tests.serving.conftest import Server, free_port

QUESTION = "Why are flights delayed by summer storms?"
CHAT = "/v1/chat/completions"


class Provider:
    """The fake OpenAI-compatible provider on a port chosen in advance, so that it can stop
    and start again where a logged chain expects its LLM."""

    def __init__(self) -> None:
        self.port = free_port()
        self.app = FakeOpenAIApp()  # kept across restarts: its calls add up
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def calls(self) -> int:
        return self.app.state.calls[CHAT]

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "provider not up"
            time.sleep(0.02)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None


@pytest.fixture
def provider() -> Iterator[Provider]:
    provider = Provider()
    provider.start()
    yield provider
    provider.stop()


def _log(project: Path, name: str, llm_url: str, prompt: str = f"{PROMPT}@production") -> str:
    with lakeforge.connect("dev", project_dir=project) as ws:
        version = log_chain(
            ws, name=name, index=INDEX, prompt=prompt, llm={"base_url": llm_url, "model": "chat"}
        )
        ws.models.set_alias(name, "champion", int(version.version))
    return str(version.version)


@pytest.mark.slow
def test_a_chain_serves_while_its_llm_is_down(rag_project: Path, provider: Provider) -> None:
    _log(rag_project, "rag.llm_down", provider.url)  # answers once before it is logged
    provider.stop()
    logged = provider.calls()
    server = Server(rag_project, "--model", "rag.llm_down@champion")
    try:
        server.wait_ready(timeout_s=180)  # started with its LLM down
        path = "/serving-endpoints/llm_down/invocations"
        request = {"dataframe_records": [{"question": QUESTION}]}
        status, body = server.post(path, request)
        assert status == 503, body
        assert body["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert f"LLM endpoint {provider.url}/chat/completions (model chat)" in body["message"]
        assert "ConnectError" in body["message"]

        provider.start()  # back: the same request succeeds, no restart
        status, body = server.post(path, request)
        assert status == 200, body
        [answer] = body["predictions"]
        assert answer["sources"][0] == "n04" and QUESTION in answer["answer"]
        assert provider.calls() == logged + 1
    finally:
        server.stop()


def test_warming_a_chain_never_asks_its_llm_and_its_failures_are_503s(
    rag_project: Path, fake_llm: FakeOpenAI, served_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "rag.warmed"
    version = _log(rag_project, name, fake_llm.url)
    before = fake_llm.calls[CHAT]
    with lakeforge.connect("dev", project_dir=rag_project) as ws:
        # the chain's traces go to the target's store (not ./mlflow.db, MLflow's default)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", ws.target.mlflow_tracking_uri)
        model = load(ws, f"dev.{name}", version, _no_online_store)  # loads and warms
    assert fake_llm.calls[CHAT] == before  # warmed from the index and prompt only

    try:
        _check_failures_are_503s(model, fake_llm)
    finally:
        model.pyfunc.unwrap_python_model().chain.close()  # its pooled LLM connection


def _check_failures_are_503s(model: Any, fake_llm: FakeOpenAI) -> None:
    """Each way a request reaches the chain answers its LLM's failure as a 503 naming it."""
    body = f'{{"dataframe_records": [{{"question": "{QUESTION}"}}]}}'.encode()
    fast = model.frame(parse_mlflow(body))
    assert fast is not None
    fake_llm.fail(503, times=3, message="the LLM is overloaded")
    for call in (
        lambda: model.predict_frame(fast),  # the fast path
        lambda: model.predict_request(parse_mlflow(body), v2=False),  # MLflow's parser
        lambda: model.invoke_mlflow(f"question\n{QUESTION}\n".encode(), "text/csv"),
    ):
        with pytest.raises(RequestError) as failed:
            call()
        assert failed.value.status == 503 and failed.value.error_code == "TEMPORARILY_UNAVAILABLE"
        assert f"LLM endpoint {fake_llm.url}/chat/completions" in failed.value.message
        assert "answered 503" in failed.value.message and "overloaded" in failed.value.message
    answer = model.predict_frame(fast)  # the LLM answers again
    assert answer.iloc[0]["sources"][0] == "n04"


def test_a_broken_chain_still_fails_to_load_with_the_reason(
    rag_project: Path, fake_llm: FakeOpenAI, served_env: Path
) -> None:
    prompt = "prompts.warm_answer"
    with lakeforge.connect("dev", project_dir=rag_project) as ws:
        good = ws.prompts.register(prompt, TEMPLATE)
        ws.prompts.set_alias(prompt, "production", int(good.version))
    version = _log(rag_project, "rag.broken", fake_llm.url, prompt=f"{prompt}@production")
    with lakeforge.connect("dev", project_dir=rag_project) as ws:
        bad = ws.prompts.register(prompt, "Answer: {{question}}")  # no {{context}}
        ws.prompts.set_alias(prompt, "production", int(bad.version))
        with pytest.raises(ChainError, match=r"lacks the placeholder\(s\) \{\{context\}\}"):
            load(ws, "dev.rag.broken", version, _no_online_store)


def _no_online_store() -> Any:
    raise AssertionError("a chain reads no online store")
