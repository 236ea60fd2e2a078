"""A planted API key appears in no result, error, log line or repr of the gateway."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from lakeforge.llm import GatewayEndpoint, GatewayResult
from lakeforge.project import LLMEndpointSpec
from lakeforge.testing.fake_openai import FakeOpenAI

SECRET = "sk-PLANTED-4f9c2e7a1b3d"
USER = {"role": "user", "content": "hello"}


def _results(gateway: GatewayEndpoint, fake: FakeOpenAI) -> list[GatewayResult]:
    async def go() -> list[GatewayResult]:
        found = []
        try:
            found.append(await gateway.chat({"messages": [USER]}, user="u", request_id="1"))
            fake.fail(500, times=10, echo_auth=True, message=f"upstream broke, key {SECRET}")
            found.append(await gateway.chat({"messages": [USER]}, user="u", request_id="2"))
            fake.reset()
            fake.fail(400, echo_auth=True, message=f"bad request from {SECRET}")
            found.append(await gateway.chat({"messages": [USER]}, user="u", request_id="3"))
            fake.fail(503, times=10, echo_auth=True)
            stream = gateway.chat_stream(
                {"messages": [USER], "stream": True}, user="u", request_id="4"
            )
            found.append(await stream.start() or GatewayResult(0, None, "unexpected"))
        finally:
            await gateway.aclose()
        return found

    return asyncio.run(go())


@pytest.mark.parametrize("source", ["env", "file"])
def test_planted_secret_never_leaves(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    if source == "env":
        monkeypatch.setenv("LF_TEST_KEY", SECRET)
        api_key = {"env": "LF_TEST_KEY"}
    else:
        (tmp_path / "key").write_text(SECRET + "\n")
        api_key = {"file": str(tmp_path / "key")}
    with FakeOpenAI(api_key=SECRET) as fake:
        route = {
            "provider": "openai",
            "model": "m",
            "base_url": fake.url,
            "api_key": api_key,
            "max_retries": 1,
            "backoff_s": 0.001,
        }
        spec = LLMEndpointSpec.model_validate(
            {"models": [{"name": "a", **route}, {"name": "b", **route}]}
        )
        gateway = GatewayEndpoint("e", spec)
        results = _results(gateway, fake)
        sent = fake.state()["headers"]
    assert sent[0]["authorization"] == f"Bearer {SECRET}"  # it was used
    assert [r.status for r in results] == [200, 502, 400, 502]
    assert "[redacted]" in (results[2].error or "")
    texts = [repr(r) for r in results] + [json.dumps(r.body) for r in results]
    texts += [repr(gateway), repr(spec), spec.model_dump_json(), caplog.text]
    texts += [str(record.args) for record in caplog.records]
    assert caplog.records  # the failures were logged
    assert not [t for t in texts if SECRET in t]


def test_wrong_or_missing_key_names_its_source_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LF_WRONG_KEY", SECRET)
    with FakeOpenAI(api_key="the-right-one") as fake:
        route = {"provider": "openai", "model": "m", "base_url": fake.url, "max_retries": 0}
        spec = LLMEndpointSpec.model_validate(
            {
                "models": [
                    {"name": "wrong", **route, "api_key": {"env": "LF_WRONG_KEY"}},
                    {"name": "missing", **route, "api_key": {"env": "LF_NOT_SET_ANYWHERE"}},
                ]
            }
        )

        async def go() -> GatewayResult:
            gateway = GatewayEndpoint("e", spec)
            try:
                return await gateway.chat({"messages": [USER]}, user=None, request_id="r")
            finally:
                await gateway.aclose()

        result = asyncio.run(go())
    assert result.status == 502 and result.error is not None
    assert "wrong: HTTP 401" in result.error
    assert "environment variable LF_NOT_SET_ANYWHERE is not set" in result.error
    assert SECRET not in repr(result) and SECRET not in json.dumps(result.body)
