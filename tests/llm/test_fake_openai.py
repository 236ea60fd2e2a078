"""The fake OpenAI server answers the real ``openai`` client, and does what it is told."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from lakeforge.testing.fake_openai import FakeOpenAI


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> openai.OpenAI:
    fake.reset()
    return openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0)


def test_chat_echoes_and_counts_words(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    answer = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hello fake world"}]
    )
    assert answer.choices[0].message.content == "hello fake world"
    assert answer.model == "m"
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (3, 3)
    assert fake.calls["/v1/chat/completions"] == 1
    assert fake.requests[0]["messages"][0]["content"] == "hello fake world"


def test_streamed_chat_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 6


def test_completions_embeddings_models(client: openai.OpenAI) -> None:
    assert client.completions.create(model="m", prompt="say hi").choices[0].text == "say hi"
    vectors = client.embeddings.create(model="e", input=["a b", "c"]).data
    assert len(vectors) == 2 and len(vectors[0].embedding) == 8
    assert vectors[0].embedding != vectors[1].embedding
    again = client.embeddings.create(model="e", input="a b").data[0].embedding
    assert again == vectors[0].embedding  # deterministic
    assert [m.id for m in client.models.list()] == ["fake-model"]


def test_fails_for_the_next_calls_then_recovers(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.fail(429, times=2, retry_after=1.5)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert caught.value.response.headers["retry-after"] == "1.5"
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    fake.fail(503, path="/v1/embeddings")
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="e", input="x")
    assert fake.calls == {"/v1/chat/completions": 4, "/v1/embeddings": 1}


def test_no_usage_and_fixed_reply(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.configure(usage=False, reply="fixed answer")
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert answer.usage is None and answer.choices[0].message.content == "fixed answer"


def test_broken_stream(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.configure(break_stream_after=2)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "a b c d"}], stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)


def test_required_key_is_echoed_when_wrong() -> None:
    with FakeOpenAI(api_key="right", subprocess=True) as fake:
        wrong = openai.OpenAI(base_url=fake.url, api_key="wrong-key", max_retries=0)
        with pytest.raises(openai.AuthenticationError, match="wrong-key"):
            wrong.models.list()
        right = openai.OpenAI(base_url=fake.url, api_key="right", max_retries=0)
        assert right.models.list().data[0].id == "fake-model"
