"""The real ``openai`` client against ``lakeforge serve``'s LLM endpoints over a fake upstream.

One server for the module; the last test stops it (a graceful stop flushes the spool)
and reads the log tables the earlier tests filled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest

import lakeforge
from lakeforge.testing.fake_openai import FakeOpenAI
from tests.llm.llm_server import TOKEN, LLMServer, llm_project

SECRET = "sk-planted-7f3c9e1d2b4a"
pytestmark = pytest.mark.slow


class Served:
    def __init__(self, project: Path, server: LLMServer, fake: FakeOpenAI) -> None:
        self.project, self.server, self.fake = project, server, fake
        self.client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=TOKEN, max_retries=0)
        self.ids: dict[str, str] = {}  # test -> x-request-id of its request


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with FakeOpenAI(api_key=SECRET) as fake:
        project = llm_project(tmp_path_factory.mktemp("llm"), fake.url)
        server = LLMServer(project, SECRET)
        try:
            server.wait_ready()
            yield Served(project, server, fake)
        finally:
            server.stop()


def test_chat_fills_the_prompt_and_answers_through_the_openai_client(served: Served) -> None:
    raw = served.client.chat.completions.with_raw_response.create(
        model="assistant",
        messages=[{"role": "user", "content": "where is my order"}],
        user="alice",
        extra_body={"lakeforge": {"prompt_variables": {"product": "Lakeforge"}}},
    )
    served.ids["chat"] = raw.headers["x-request-id"]
    answer = raw.parse()
    assert answer.choices[0].message.content == "where is my order"  # the fake echoes
    assert answer.usage is not None and answer.usage.completion_tokens == 4
    sent = served.fake.requests[-1]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are the support agent of Lakeforge. Answer briefly.",
    }
    assert "lakeforge" not in sent  # the extension never goes upstream


def test_streamed_chat_arrives_in_chunks(served: Served) -> None:
    raw = served.client.chat.completions.with_raw_response.create(
        model="assistant",
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
        extra_body={"lakeforge": {"prompt_variables": {"product": "Lakeforge"}}},
        extra_headers={"X-Lakeforge-User": "bob"},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    served.ids["stream"] = raw.headers["x-request-id"]
    pieces = [c.choices[0].delta.content for c in raw.parse() if c.choices]
    words = [p for p in pieces if p]
    assert len(words) == 5
    assert "".join(words) == "one two three four five"


def test_a_client_that_leaves_mid_stream_is_logged_as_499(served: Served) -> None:
    import httpx

    served.fake.configure(chunk_delay_s=0.3)
    body = {
        "model": "assistant",
        "stream": True,
        "messages": [{"role": "user", "content": "a b c d e f g h"}],
        "lakeforge": {"prompt_variables": {"product": "Lakeforge"}},
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{served.server.url}/v1/chat/completions"
    try:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as answer:
            served.ids["left"] = answer.headers["x-request-id"]
            next(answer.iter_bytes())  # the first chunk, then hang up
    finally:
        served.fake.configure(chunk_delay_s=0.0)


def test_completions(served: Served) -> None:
    answer = served.client.completions.create(model="complete", prompt="say this back")
    assert answer.choices[0].text == "say this back"


def test_embeddings_come_from_the_local_minilm(served: Served) -> None:
    raw = served.client.embeddings.with_raw_response.create(
        model="embed",
        input=[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market fell sharply today.",
        ],
    )
    served.ids["embed"] = raw.headers["x-request-id"]
    vectors = np.array([d.embedding for d in raw.parse().data])
    assert vectors.shape == (3, 384)
    assert served.fake.calls["/v1/embeddings"] == 0  # local: the upstream is never asked
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    related, unrelated = unit[0] @ unit[1], unit[0] @ unit[2]
    assert related > 0.5 > unrelated


def test_models_lists_the_llm_endpoints(served: Served) -> None:
    ids = {m.id for m in served.client.models.list()}
    assert ids == {"assistant", "complete", "embed", "limited"}
    stranger = openai.OpenAI(base_url=f"{served.server.url}/v1", api_key="wrong", max_retries=0)
    # endpoints behind a token the caller lacks are not listed
    assert {m.id for m in stranger.models.list()} == {"embed", "limited"}


def test_unknown_model_and_bad_token_are_refused(served: Served) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        served.client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    assert "assistant, complete, embed, limited" in str(missing.value)
    stranger = openai.OpenAI(base_url=f"{served.server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        stranger.completions.create(model="complete", prompt="x")


def test_the_rate_limit_answers_429_with_retry_after(served: Served) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    served.client.chat.completions.create(model="limited", messages=messages)
    with pytest.raises(openai.RateLimitError) as limited:
        served.client.chat.completions.create(model="limited", messages=messages)
    headers = limited.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert "rate limit" in limited.value.message


def test_log_tables_after_a_graceful_stop(served: Served) -> None:
    served.server.stop()  # flushes every spool
    with lakeforge.connect("dev", project_dir=served.project) as ws:
        rows = ws.tables.read("serving.assistant_llm_requests", format="pandas")
        usage = ws.tables.read("serving.assistant_llm_requests_usage", format="pandas")
        embed = ws.tables.read("serving.embed_log", format="pandas")
        limited = ws.tables.read("serving.limited_llm_requests", format="pandas")
        complete = ws.tables.read("serving.complete_llm_requests", format="pandas")
    by_id = rows.set_index("request_id")
    chat = by_id.loc[served.ids["chat"]]
    assert (chat.status_code, chat.route, chat.model, chat.provider) == (
        200,
        "small",
        "gpt-4o-mini",
        "openai",
    )
    assert chat.prompt == "dev.prompts.support/1"
    assert chat.user == "alice"
    assert chat.output_tokens == 4 and chat.input_tokens > 4
    assert chat.total_tokens == chat.input_tokens + chat.output_tokens
    assert chat.cost == pytest.approx(chat.input_tokens * 0.15 + chat.output_tokens * 0.6)
    assert "where is my order" in chat.request
    stream = by_id.loc[served.ids["stream"]]
    assert stream.user == "bob" and stream.output_tokens == 5
    assert '"one two three four five"' in stream.response  # the assembled message
    left = by_id.loc[served.ids["left"]]
    assert left.status_code == 499 and "closed the connection" in left.error
    assert sorted(complete.status_code) == [200, 403]  # refused requests are logged too
    assert sorted(limited.status_code) == [200, 429]
    assert embed.set_index("request_id").loc[served.ids["embed"]].route == "minilm"
    # usage: one row per flushed batch, summed per window
    totals = usage.groupby(["endpoint_name", "route", "user"], dropna=False)[
        ["requests", "errors", "input_tokens", "output_tokens", "cost"]
    ].sum()
    alice = totals.loc[("assistant", "small", "alice")]
    assert alice.requests == 1 and alice.errors == 0
    assert alice.output_tokens == chat.output_tokens
    assert alice.cost == pytest.approx(chat.cost)
    assert usage.requests.sum() == len(rows)
