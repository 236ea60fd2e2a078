"""``GatewayStream``: a streamed chat, passed through chunk by chunk, with its result."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from lakeforge.llm._calls import PATHS, Call, GatewayResult, Refused, error_body, short
from lakeforge.llm._cost import cost_of, usage_of
from lakeforge.llm._providers import UpstreamError
from lakeforge.llm._reliability import backoff_s
from lakeforge.project import LLMModelSpec

if TYPE_CHECKING:
    from lakeforge.llm._gateway import GatewayEndpoint


class GatewayStream:
    """A streamed chat: SSE chunks as they come; ``result`` once done.

    ``await start()`` admits the request and reads the first chunk of a route, falling
    back on failure until then; it returns None when streaming can begin, or the error
    ``GatewayResult`` to answer instead. Iterating calls ``start()`` when not done yet.
    A failure after the first chunk ends the stream with an ``error`` event.
    """

    def __init__(
        self, gateway: GatewayEndpoint, body: dict[str, Any], user: str | None, request_id: str
    ) -> None:
        self._gateway = gateway
        self._raw = body
        self._user = user
        self._request_id = request_id
        self._events: AsyncIterator[bytes] | None = None
        self._first: bytes | None = None
        self._call: Call | None = None
        self._route: LLMModelSpec | None = None
        self._prompt: str | None = None
        self._attempts = 0
        self._started = False
        self._client_usage = False
        self._sent: dict[str, Any] = {}
        self.result: GatewayResult | None = None

    async def start(self) -> GatewayResult | None:
        if self._started:
            return self.result if self._events is None else None
        self._started = True
        gateway = self._gateway
        call = Call("chat", {}, {}, False, self._user, self._request_id, time.perf_counter(), 0)
        try:
            call = await gateway._begin("chat", self._raw, self._user, self._request_id)
            self._call = call
            options = call.body.get("stream_options") or {}
            self._client_usage = bool(isinstance(options, dict) and options.get("include_usage"))
            await self._open(call)
        except Refused as refusal:
            self.result = gateway._refused(call, refusal)
        return self.result

    async def _open(self, call: Call) -> None:
        gateway = self._gateway
        failures: list[str] = []
        last: UpstreamError | None = None
        for route in gateway.router.order(call.tokens_in, escalate=call.escalate):
            body, prompt = gateway._upstream_body(call, route)
            body["stream"] = True
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            breaker = gateway.breakers[route.name]
            if not breaker.allow():
                failures.append(f"{route.name}: circuit open")
                continue
            for retry in range(route.max_retries + 1):
                self._attempts += 1
                provider = gateway._providers[route.name]
                stream = getattr(provider, "stream", None)  # isinstance of a Protocol is slow
                assert stream is not None  # chat routes (openai, mlflow) can stream
                iterator = stream(PATHS["chat"], body).__aiter__()
                began = time.time_ns()
                try:
                    first = await iterator.__anext__()
                except StopAsyncIteration:
                    last = UpstreamError(None, "upstream stream ended empty", retryable=True)
                    call.attempted(route, began, last)
                except UpstreamError as exc:
                    call.attempted(route, began, exc)
                    last = exc
                    if exc.client_error:
                        breaker.release()
                        await gateway._settle(call, call.tokens_in)
                        self.result = gateway._result(
                            call,
                            exc.status or 400,
                            error_body(exc.message, "invalid_request_error"),
                            attempts=self._attempts,
                            error=exc.message,
                            **gateway._fields(route, prompt),
                        )
                        return
                else:
                    call.attempted(route, began, None)  # until the first chunk
                    breaker.success()
                    self._events, self._first = iterator, first
                    self._route, self._prompt, self._sent = route, prompt, body
                    return
                breaker.failure()
                if not last.retryable or retry == route.max_retries or not breaker.allow():
                    break
                await gateway._sleep(backoff_s(retry, route.backoff_s, last.retry_after_s))
            assert last is not None
            failures.append(f"{route.name}: {short(last)}")
        self.result = gateway._failed(call, failures, last, self._attempts)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if await self.start() is not None or self._events is None or self._first is None:
            return
        call, route = self._call, self._route
        assert call is not None and route is not None
        content: list[str] = []
        usage: dict[str, Any] | None = None
        meta: dict[str, Any] = {}
        error: str | None = None
        payload: bytes | None = self._first
        try:
            while payload is not None:
                if payload == b"[DONE]":
                    yield b"data: [DONE]\n\n"
                    break
                forward = True
                try:
                    event = orjson.loads(payload)
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    meta = meta or {k: event.get(k) for k in ("id", "created", "model")}
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if isinstance(piece, str):
                            content.append(piece)
                    if isinstance(event.get("usage"), dict):
                        usage = event["usage"]
                        forward = self._client_usage or bool(event.get("choices"))
                if forward:
                    yield b"data: " + payload + b"\n\n"
                payload = await anext(self._events, None)
        except UpstreamError as exc:
            error = f"the upstream stream broke after its first chunk ({short(exc)})"
            body = error_body(error, "upstream_error")
            yield b"data: " + orjson.dumps(body) + b"\n\n"
        await self._finish(call, route, content, usage, meta, error)

    async def _finish(
        self,
        call: Call,
        route: LLMModelSpec,
        content: list[str],
        usage: dict[str, Any] | None,
        meta: dict[str, Any],
        error: str | None,
    ) -> None:
        gateway = self._gateway
        message = {"role": "assistant", "content": "".join(content)}
        assembled: dict[str, Any] = {
            **meta,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
        if usage is not None:
            assembled["usage"] = usage
        tokens_in, tokens_out, _ = usage_of("chat", self._sent, assembled)
        await gateway._settle(call, tokens_in + tokens_out)
        self.result = gateway._result(
            call,
            502 if error else 200,
            assembled,
            attempts=self._attempts,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost=cost_of(route.price, tokens_in, tokens_out),
            error=error,
            **gateway._fields(route, self._prompt),
        )

    async def aclose(self) -> None:
        """Stop reading the upstream (a client that went away)."""
        closer = getattr(self._events, "aclose", None)
        if closer is not None:
            await closer()
