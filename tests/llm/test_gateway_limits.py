"""Rate limits: per endpoint and per user, in requests and tokens, held across processes."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakeforge.llm import GatewayEndpoint, GatewayResult
from lakeforge.llm._limits import Bucket, FileBuckets, MemoryBuckets, RateLimiter, RedisBuckets
from lakeforge.project import LLMEndpointSpec, RateLimitSpec
from lakeforge.testing.fake_openai import FakeOpenAI

USER = {"role": "user", "content": "hello gateway"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def spec_with(fake: FakeOpenAI, limits: dict[str, Any]) -> LLMEndpointSpec:
    return LLMEndpointSpec.model_validate(
        {
            "models": [{"name": "m", "provider": "openai", "model": "mini", "base_url": fake.url}],
            "rate_limits": limits,
        }
    )


def calls(gateway: GatewayEndpoint, users: list[str | None]) -> list[GatewayResult]:
    async def go() -> list[GatewayResult]:
        try:
            return [await gateway.chat({"messages": [USER]}, user=u, request_id="r") for u in users]
        finally:
            await gateway.aclose()

    return asyncio.run(go())


def test_requests_per_minute_per_endpoint(fake: FakeOpenAI, tmp_path: Path) -> None:
    gateway = GatewayEndpoint("a", spec_with(fake, {"requests_per_minute": 3}), limits_dir=tmp_path)
    results = calls(gateway, ["ann", "bob", "cid", "dan"])
    assert [r.status for r in results] == [200, 200, 200, 429]
    refused = results[-1]
    assert refused.retry_after_s is not None and 0 < refused.retry_after_s <= 20.0
    assert refused.body is not None and refused.body["error"]["code"] == "rate_limited"
    assert refused.error is not None and "requests_per_minute" in refused.error
    assert (tmp_path / "a.ratelimits").is_file()


def test_requests_per_minute_per_user(fake: FakeOpenAI) -> None:
    spec = spec_with(fake, {"per_user": {"requests_per_minute": 2}})
    results = calls(GatewayEndpoint("a", spec), ["ann", "ann", "bob", "ann", None, None, None])
    assert [r.status for r in results] == [200, 200, 200, 429, 200, 200, 429]
    assert results[3].error is not None and "per_user.requests_per_minute" in results[3].error


def test_tokens_per_minute_charge_actual_usage(fake: FakeOpenAI) -> None:
    # each call: 2 input + 2 output tokens; 10 per minute lets 3 through (2 + 4 + 4 > 10)
    results = calls(GatewayEndpoint("a", spec_with(fake, {"tokens_per_minute": 10})), ["a"] * 4)
    assert [r.status for r in results] == [200, 200, 200, 429]


def bucket(key: str, per_minute: int = 60) -> Bucket:
    return Bucket(key, per_minute, per_minute / 60, 1, 1, "requests_per_minute")


def test_buckets_refill_over_time() -> None:
    now = [1000.0]

    async def go() -> None:
        for store in (MemoryBuckets(clock=lambda: now[0]), FileBuckets(path, clock=lambda: now[0])):
            assert await store.take([bucket("k", 2)]) is None
            assert await store.take([bucket("k", 2)]) is None
            refused = await store.take([bucket("k", 2)])
            assert refused is not None and refused[0] == pytest.approx(30.0)
            now[0] += 30.0
            assert await store.take([bucket("k", 2)]) is None
            # a refused request takes nothing from the buckets that had room
            assert await store.take([bucket("other", 2), bucket("k", 2)]) == (
                pytest.approx(30.0),
                1,
            )
            await store.take([bucket("other", 2)])
            assert await store.take([bucket("other", 2)]) is None
            await store.aclose()

    path = Path(f"/tmp/lf-limits-{uuid.uuid4().hex}")
    try:
        asyncio.run(go())
    finally:
        path.unlink(missing_ok=True)


def test_file_buckets_reuse_the_stalest_slot_when_full(tmp_path: Path) -> None:
    now = [0.0]
    store = FileBuckets(tmp_path / "few", slots=4, clock=lambda: now[0])

    async def go() -> None:
        for i in range(4):
            now[0] += 1
            await store.take([bucket(f"user{i}", 1)])
        now[0] += 1
        assert await store.take([bucket("newcomer", 1)]) is None
        assert await store.take([bucket("user3", 1)]) is not None  # still tracked
        await store.aclose()

    asyncio.run(go())


_WORKER = """
import asyncio, sys
from pathlib import Path
from lakeforge.llm._limits import FileBuckets, RateLimiter
from lakeforge.project import RateLimitSpec

async def main():
    store = FileBuckets(Path(sys.argv[1]))
    limiter = RateLimiter("shared", RateLimitSpec(requests_per_minute=int(sys.argv[2])), store)
    Path(sys.argv[3]).touch()
    while not Path(sys.argv[4]).exists():
        await asyncio.sleep(0.005)
    admitted = 0
    for _ in range(int(sys.argv[2])):
        admitted += await limiter.admit("u", 1) is None
        await asyncio.sleep(0.003)  # let the other process interleave
    print(admitted)

asyncio.run(main())
"""


@pytest.mark.slow
def test_two_processes_share_one_limit(tmp_path: Path) -> None:
    limit, path, go = 40, tmp_path / "shared.ratelimits", tmp_path / "go"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                str(path),
                str(limit),
                str(tmp_path / f"ready{i}"),
                str(go),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        time.sleep(0.01)
    started = time.monotonic()
    go.touch()
    admitted = [int(w.communicate(timeout=60)[0]) for w in workers]
    refill = math.ceil((time.monotonic() - started) * limit / 60)
    # each process alone would admit `limit`; together they share one bucket
    assert limit <= sum(admitted) <= limit + refill
    assert all(a > 0 for a in admitted) or refill >= limit


@pytest.mark.redis
def test_redis_buckets_share_one_limit() -> None:
    url = "redis://127.0.0.1:6379/0"
    prefix = f"lakeforge:test:{uuid.uuid4().hex}:"

    async def go() -> list[bool]:
        stores = [RedisBuckets(url, prefix=prefix), RedisBuckets(url, prefix=prefix)]
        limiters = [RateLimiter("e", RateLimitSpec(requests_per_minute=5), s) for s in stores]
        try:
            return [await limiters[i % 2].admit(None, 1) is None for i in range(8)]
        finally:
            for store in stores:
                await store.aclose()

    assert asyncio.run(go()) == [True] * 5 + [False] * 3
