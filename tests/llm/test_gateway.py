"""The gateway against fake upstreams: answers, streams, retries, fallback, breaker,
split, routing, cache, cost, prompts, and the spec's validation."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakeforge.errors import ConfigError
from lakeforge.llm import GatewayEndpoint, GatewayResult, count_tokens
from lakeforge.llm._cache import ResponseCache
from lakeforge.llm._reliability import CircuitBreaker, backoff_s
from lakeforge.llm._router import Router
from lakeforge.project import LLMEndpointSpec, parse_config
from lakeforge.testing.fake_openai import FakeOpenAI

USER = {"role": "user", "content": "hello gateway"}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with FakeOpenAI() as first, FakeOpenAI() as second:
        yield first, second


@pytest.fixture
def fakes(servers: tuple[FakeOpenAI, FakeOpenAI]) -> tuple[FakeOpenAI, FakeOpenAI]:
    for fake in servers:
        fake.reset()
    return servers


def spec_of(fakes: tuple[FakeOpenAI, FakeOpenAI], **extra: Any) -> LLMEndpointSpec:
    route: dict[str, Any] = {"provider": "openai", "max_retries": 2, "backoff_s": 0.001}
    models = [
        {
            **route,
            "name": "small",
            "model": "mini",
            "base_url": fakes[0].url,
            "price": {"input_per_1m": 0.15, "output_per_1m": 0.6},
        },
        {
            **route,
            "name": "big",
            "model": "large",
            "base_url": fakes[1].url,
            "price": {"input_per_1m": 2.5, "output_per_1m": 10},
        },
    ]
    for name, changes in extra.pop("routes", {}).items():
        next(m for m in models if m["name"] == name).update(changes)
    return LLMEndpointSpec.model_validate({"models": models, **extra})


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def run(gateway: GatewayEndpoint, body: dict[str, Any], user: str | None = None) -> GatewayResult:
    async def go() -> GatewayResult:
        try:
            return await gateway.chat(body, user=user, request_id="r1")
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def test_chat_result(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    result = run(
        GatewayEndpoint("assistant", spec_of(fakes)), {"model": "assistant", "messages": [USER]}
    )
    assert result.status == 200 and result.body is not None
    assert result.body["choices"][0]["message"]["content"] == "hello gateway"
    assert (result.route, result.model, result.provider) == ("small", "mini", "openai")
    assert (result.input_tokens, result.output_tokens, result.attempts) == (2, 2, 1)
    assert result.cost == pytest.approx((2 * 0.15 + 2 * 0.6) / 1e6)
    assert not result.cached and result.error is None
    assert fakes[0].requests[0]["model"] == "mini"  # the route's model goes upstream


def test_cost_counts_tokens_when_usage_is_absent(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    fakes[0].configure(usage=False, reply="Fine, thanks!")
    result = run(GatewayEndpoint("a", spec_of(fakes)), {"messages": [USER]})
    assert (result.input_tokens, result.output_tokens) == (2, 4)  # Fine , thanks !
    assert count_tokens("Fine, thanks!") == 4
    assert result.cost == pytest.approx((2 * 0.15 + 4 * 0.6) / 1e6)


def test_retries_500_then_answers(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    fakes[0].fail(500, times=2)
    sleeps = Sleeps()
    result = run(GatewayEndpoint("a", spec_of(fakes), sleep=sleeps), {"messages": [USER]})
    assert result.status == 200 and result.route == "small" and result.attempts == 3
    assert len(sleeps.delays) == 2 and sleeps.delays[1] > 0
    assert fakes[1].calls.total() == 0


def test_retry_honours_retry_after(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    fakes[0].fail(429, times=1, retry_after=0.25)
    sleeps = Sleeps()
    result = run(GatewayEndpoint("a", spec_of(fakes), sleep=sleeps), {"messages": [USER]})
    assert result.status == 200 and result.attempts == 2 and sleeps.delays == [0.25]


def test_client_errors_are_neither_retried_nor_fallen_back(
    fakes: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    fakes[0].fail(400, message="bad parameter temperature")
    result = run(GatewayEndpoint("a", spec_of(fakes)), {"messages": [USER]})
    assert result.status == 400 and result.attempts == 1
    assert "bad parameter temperature" in json.dumps(result.body)
    assert fakes[1].calls.total() == 0


def test_fallback_to_the_next_route(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    fakes[0].fail(503, times=10)
    result = run(GatewayEndpoint("a", spec_of(fakes)), {"messages": [USER]})
    assert result.status == 200 and result.route == "big" and result.model == "large"
    assert result.attempts == 4  # 3 on small, 1 on big
    assert result.cost == pytest.approx((2 * 2.5 + 2 * 10) / 1e6)


def test_no_fallback_when_disabled_and_all_routes_down(
    fakes: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    fakes[0].fail(503, times=10)
    result = run(GatewayEndpoint("a", spec_of(fakes, fallback=False)), {"messages": [USER]})
    assert result.status == 502 and fakes[1].calls.total() == 0
    assert result.error is not None and "small: HTTP 503" in result.error
    fakes[1].fail(429, times=10, retry_after=0.01)
    result = run(GatewayEndpoint("a", spec_of(fakes)), {"messages": [USER]})
    assert result.status == 429 and result.retry_after_s == 0.01


def test_circuit_breaker_skips_a_failing_route(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    spec = spec_of(
        fakes, circuit_breaker={"failures": 2, "reset_s": 60}, routes={"small": {"max_retries": 0}}
    )
    fakes[0].fail(500, times=100)

    async def go() -> list[GatewayResult]:
        gateway = GatewayEndpoint("a", spec)
        try:
            return [
                await gateway.chat({"messages": [USER]}, user=None, request_id=str(i))
                for i in range(5)
            ]
        finally:
            await gateway.aclose()

    results = asyncio.run(go())
    assert all(r.status == 200 and r.route == "big" for r in results)
    assert fakes[0].calls["/v1/chat/completions"] == 2  # then open: not called
    assert [r.attempts for r in results] == [2, 2, 1, 1, 1]


def test_breaker_half_opens_after_reset() -> None:
    now = [0.0]
    breaker = CircuitBreaker(2, 10.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failure()
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed" and breaker.allow()


def test_backoff_grows_with_jitter_and_caps() -> None:
    rng = random.Random(1)
    delays = [backoff_s(retry, 0.5, None, rng=rng) for retry in range(8)]
    assert 0.25 <= delays[0] < 0.75 and 0.5 <= delays[1] < 1.5
    assert max(delays) < 12.0 and delays[7] >= 4.0
    assert backoff_s(0, 0.5, 100.0) == 30.0


def test_split_proportions_within_three_sigma(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    spec = spec_of(fakes, routes={"small": {"weight": 90}, "big": {"weight": 10}})
    router = Router(spec, rng=random.Random(17))
    picks = [router.order(10)[0].name for _ in range(10_000)]
    n, p = 10_000, 0.9
    assert abs(picks.count("small") - n * p) <= 3 * math.sqrt(n * p * (1 - p))
    assert [m.name for m in router.order(10) if m.name != picks[0]]  # fallbacks follow


def test_split_is_seen_in_results(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    spec = spec_of(fakes, routes={"small": {"weight": 50}, "big": {"weight": 50}})

    async def go() -> list[str | None]:
        gateway = GatewayEndpoint("a", spec, router=Router(spec, rng=random.Random(3)))
        try:
            return [
                (await gateway.chat({"messages": [USER]}, user=None, request_id="r")).route
                for _ in range(40)
            ]
        finally:
            await gateway.aclose()

    routes = asyncio.run(go())
    assert fakes[0].calls.total() == routes.count("small") > 0
    assert fakes[1].calls.total() == routes.count("big") > 0


def test_routing_escalates_long_inputs_and_on_request(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    spec = spec_of(fakes, routing={"escalate_to": "big", "when": {"max_input_tokens": 5}})
    assert run(GatewayEndpoint("a", spec), {"messages": [USER]}).route == "small"
    long = {"role": "user", "content": "one two three four five six"}
    assert run(GatewayEndpoint("a", spec), {"messages": [long]}).route == "big"
    asked = {"messages": [USER], "lakeforge": {"escalate": True}}
    assert run(GatewayEndpoint("a", spec), asked).route == "big"
    assert "lakeforge" not in fakes[1].requests[-1]  # the extension stays here


def test_cache_answers_repeats(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    spec = spec_of(fakes, cache={"ttl_s": 60})

    async def go() -> list[GatewayResult]:
        gateway = GatewayEndpoint("a", spec)
        bodies = [
            {"messages": [USER], "temperature": 0, "user": "ann"},
            {"messages": [USER], "temperature": 0, "user": "bob"},  # user: not in the key
            {"messages": [USER], "temperature": 1},
        ]
        try:
            return [await gateway.chat(b, user=None, request_id="r") for b in bodies]
        finally:
            await gateway.aclose()

    first, second, third = asyncio.run(go())
    assert not first.cached and second.cached and not third.cached
    assert second.body == first.body and second.cost == 0.0 and second.attempts == 0
    assert fakes[0].calls.total() == 2


def test_cache_ttl_and_size_bound() -> None:
    now = [0.0]
    cache = ResponseCache(10.0, 2, clock=lambda: now[0])
    keys = [ResponseCache.key("r", None, {"n": i}) for i in range(3)]
    assert ResponseCache.key("r", "p/1", {"n": 0}) != keys[0]
    for i, key in enumerate(keys):
        cache.put(key, {"n": i})
    assert len(cache) == 2 and cache.get(keys[0]) is None and cache.get(keys[2]) == {"n": 2}
    now[0] = 11.0
    assert cache.get(keys[2]) is None


def test_stream_passes_chunks_and_assembles(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    async def go() -> tuple[list[bytes], GatewayResult | None]:
        gateway = GatewayEndpoint("a", spec_of(fakes))
        try:
            stream = gateway.chat_stream(
                {"messages": [USER], "stream": True}, user=None, request_id="s"
            )
            assert await stream.start() is None
            return [chunk async for chunk in stream], stream.result
        finally:
            await gateway.aclose()

    chunks, result = asyncio.run(go())
    assert chunks[-1] == b"data: [DONE]\n\n"
    events = [json.loads(c[6:]) for c in chunks[:-1]]
    assert all("usage" not in e for e in events)  # the client did not ask for it
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "hello gateway"
    assert fakes[0].requests[0]["stream_options"] == {"include_usage": True}
    assert result is not None and result.status == 200
    assert (
        result.body is not None
        and result.body["choices"][0]["message"]["content"] == "hello gateway"
    )
    assert (result.input_tokens, result.output_tokens) == (2, 2) and result.cost is not None


def stream_all(
    gateway: GatewayEndpoint, body: dict[str, Any]
) -> tuple[list[bytes], GatewayResult | None]:
    async def go() -> tuple[list[bytes], GatewayResult | None]:
        try:
            stream = gateway.chat_stream(body, user=None, request_id="s")
            return [chunk async for chunk in stream], stream.result
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def test_stream_falls_back_before_its_first_byte(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    fakes[0].fail(503, times=10)
    body = {"messages": [USER], "stream": True, "stream_options": {"include_usage": True}}
    chunks, result = stream_all(GatewayEndpoint("a", spec_of(fakes)), body)
    assert result is not None and result.route == "big" and result.attempts == 4
    assert json.loads(chunks[-2][6:])["usage"]["total_tokens"] == 4  # asked: forwarded


def test_stream_cannot_fall_back_after_its_first_byte(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    fakes[0].configure(break_stream_after=2)
    chunks, result = stream_all(
        GatewayEndpoint("a", spec_of(fakes)), {"messages": [USER], "stream": True}
    )
    assert result is not None and result.status == 502 and result.route == "small"
    assert "error" in json.loads(chunks[-1][6:])
    assert fakes[1].calls.total() == 0


def test_stream_refused_before_it_starts(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    for fake in fakes:
        fake.fail(500, times=10)
    spec = spec_of(fakes, routes={"small": {"max_retries": 0}, "big": {"max_retries": 0}})
    chunks, result = stream_all(GatewayEndpoint("a", spec), {"messages": [USER], "stream": True})
    assert chunks == [] and result is not None and result.status == 502


def test_prompt_becomes_the_system_message(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    asked: list[str] = []

    def prompts(ref: str) -> tuple[str, str]:
        asked.append(ref)
        return "You help with {{ product }}.", "support/3"

    spec = spec_of(fakes, prompt="support@production")
    body = {"messages": [USER], "lakeforge": {"prompt_variables": {"product": "Lakeforge"}}}
    result = run(GatewayEndpoint("a", spec, prompts=prompts), body)
    assert result.status == 200 and result.prompt == "support/3" and asked == ["support@production"]
    sent = fakes[0].requests[0]["messages"]
    assert sent == [{"role": "system", "content": "You help with Lakeforge."}, USER]
    missing = run(GatewayEndpoint("a", spec, prompts=prompts), {"messages": [USER]})
    assert missing.status == 400 and missing.error is not None and "product" in missing.error


def test_wrong_kind_and_bad_extension(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    async def go() -> tuple[GatewayResult, GatewayResult]:
        gateway = GatewayEndpoint("a", spec_of(fakes))
        try:
            wrong = await gateway.embeddings({"input": "x"}, user=None, request_id="r")
            bad = await gateway.chat(
                {"messages": [USER], "lakeforge": 3}, user=None, request_id="r"
            )
            return wrong, bad
        finally:
            await gateway.aclose()

    wrong, bad = asyncio.run(go())
    assert wrong.status == 400 and wrong.error == "endpoint 'a' serves chat, not embeddings"
    assert bad.status == 400 and fakes[0].calls.total() == 0


def test_completions_and_embeddings(fakes: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    def endpoint(kind: str) -> GatewayEndpoint:
        spec = spec_of(fakes).model_dump()
        return GatewayEndpoint("a", LLMEndpointSpec.model_validate({**spec, "type": kind}))

    async def go() -> tuple[GatewayResult, GatewayResult]:
        completions, embeddings = endpoint("completions"), endpoint("embeddings")
        try:
            text = await completions.completions({"prompt": "a b c"}, user=None, request_id="r")
            vectors = await embeddings.embeddings(
                {"input": ["x", "y z"]}, user=None, request_id="r"
            )
            return text, vectors
        finally:
            await completions.aclose()
            await embeddings.aclose()

    text, vectors = asyncio.run(go())
    assert text.body is not None and text.body["choices"][0]["text"] == "a b c"
    assert (text.input_tokens, text.output_tokens) == (3, 3)
    assert vectors.body is not None and len(vectors.body["data"]) == 2
    assert (vectors.input_tokens, vectors.output_tokens) == (3, 0)


def test_local_embeddings_use_a_registered_embedder() -> None:
    from lakeforge.llm import register_embedder

    register_embedder("tiny-test", lambda: lambda texts: [[float(len(t)), 1.0] for t in texts])
    spec = LLMEndpointSpec.model_validate(
        {
            "type": "embeddings",
            "models": [{"name": "local", "provider": "local", "model": "tiny-test"}],
        }
    )

    async def go() -> GatewayResult:
        gateway = GatewayEndpoint("e", spec)
        try:
            return await gateway.embeddings({"input": ["abc", "de"]}, user=None, request_id="r")
        finally:
            await gateway.aclose()

    result = asyncio.run(go())
    assert result.status == 200 and result.body is not None
    assert [d["embedding"] for d in result.body["data"]] == [[3.0, 1.0], [2.0, 1.0]]
    assert result.provider == "local" and result.cost is None


def _config_error(tmp_path: Path, endpoint: str) -> str:
    text = f"name: p\nendpoints: {{}}\nllm_endpoints:\n  assistant: {endpoint}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(tmp_path / "lakeforge.yaml", text)
    return str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("{models: []}", "models: List should have at least 1 item"),
        (
            "{models: [{name: a, provider: openai, model: m}, {name: a, provider: openai, model: n}]}",
            "names must be unique (repeated: ['a'])",
        ),
        (
            "{routing: {escalate_to: huge}, models: [{name: a, provider: openai, model: m}]}",
            "routing.escalate_to: 'huge' is not one of the models (models: a)",
        ),
        (
            "{models: [{name: a, provider: local, model: m}]}",
            "provider local serves embeddings only",
        ),
        (
            "{type: embeddings, prompt: p@1, models: [{name: a, provider: openai, model: m}]}",
            "a prompt is the system message of chat only",
        ),
        ("{prompt: nope, models: [{name: a, provider: openai, model: m}]}", "NAME@ALIAS"),
        (
            "{models: [{name: a, provider: openai, model: m, weight: 0}]}",
            "weights of the first tier add up to 0",
        ),
        (
            "{models: [{name: a, provider: mlflow, model: support}]}",
            "'support' is not a registered model: use NAME@ALIAS or NAME/VERSION",
        ),
        (
            "{type: embeddings, models: [{name: a, provider: mlflow, model: m@champion}]}",
            "provider mlflow serves chat and completions, not embeddings",
        ),
        (
            "{models: [{name: a, provider: mlflow, model: m/1, api_key: {env: K}}]}",
            "a mlflow model takes no api_key",
        ),
        (
            "{logging: {flush_interval_s: 0}, models: [{name: a, provider: openai, model: m}]}",
            "logging.flush_interval_s",
        ),
        (
            "{models: [{name: a, provider: bedrock, model: m}]}",
            "provider: Input should be 'openai', 'local' or 'mlflow'",
        ),
        (
            "{models: [{name: a, provider: openai, model: m, api_key: {env: A, file: /b}}]}",
            "give exactly one of env or file",
        ),
        (
            "{rate_limits: {store: memcached://x}, models: [{name: a, provider: openai, model: m}]}",
            "is not a redis:// URL",
        ),
    ],
)
def test_spec_errors_name_the_field(tmp_path: Path, endpoint: str, expected: str) -> None:
    message = _config_error(tmp_path, endpoint)
    assert "llm_endpoints.assistant" in message and expected in message


def test_an_api_key_written_down_is_refused_and_not_echoed(tmp_path: Path) -> None:
    message = _config_error(
        tmp_path, "{models: [{name: a, provider: openai, model: m, api_key: sk-PLANTED-123}]}"
    )
    assert "api_key must reference the secret by name" in message
    assert "sk-PLANTED-123" not in message


def test_llm_endpoint_names_clash_with_model_endpoints(tmp_path: Path) -> None:
    text = (
        "name: p\nendpoints:\n  same: {served_entities: [{model: ml.m, alias: champion}]}\n"
        "llm_endpoints:\n  same: {models: [{name: a, provider: openai, model: m}]}\n"
    )
    with pytest.raises(ConfigError, match="same also declared under endpoints"):
        parse_config(tmp_path / "lakeforge.yaml", text)
    config = parse_config(tmp_path / "x.yaml", text.replace("  same: {models", "  chat: {models"))
    assert config.llm_endpoints["chat"].table("chat") == "serving.chat_llm_requests"
