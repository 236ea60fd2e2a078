"""``GatewayEndpoint``: one LLM endpoint's requests, from admission to the result to log.

A request is admitted by the rate limits, routed (rule, weighted split, fallbacks), has
its prompt filled in as the system message, is answered from the cache or by the routes
in order (each with retries and a circuit breaker), and ends as a ``GatewayResult``:
the OpenAI-shaped answer or error, and what the log needs (route, prompt version,
tokens, cost, attempts, latency).

Extension field of a request body (removed before it goes upstream)::

    "lakeforge": {"prompt_variables": {"product": "Lakeforge"}, "escalate": true}
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeforge.errors import LakeforgeError
from lakeforge.llm._cache import ResponseCache
from lakeforge.llm._calls import (
    PATHS,
    Call,
    GatewayResult,
    Kind,
    PromptSource,
    Refused,
    error_body,
    short,
)
from lakeforge.llm._cost import cost_of, input_tokens, usage_of
from lakeforge.llm._limits import BucketStore, RateLimiter, open_store
from lakeforge.llm._mlflow_provider import MlflowProvider
from lakeforge.llm._providers import (
    LocalEmbeddingsProvider,
    OpenAIProvider,
    Provider,
    UpstreamError,
)
from lakeforge.llm._reliability import CircuitBreaker, backoff_s
from lakeforge.llm._router import Router
from lakeforge.llm._traces import Tracer
from lakeforge.project import LLMEndpointSpec, LLMModelSpec

if TYPE_CHECKING:
    from lakeforge.llm._stream import GatewayStream
    from lakeforge.project import Target

log = logging.getLogger("lakeforge.llm")
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_PROMPT_TTL_S = 10.0


def make_provider(spec: LLMModelSpec, target: Target | None = None) -> Provider:
    """The provider that serves the route ``spec`` (``target``: the registry of mlflow routes)."""
    if spec.provider == "mlflow":
        return MlflowProvider(spec, target)
    return OpenAIProvider(spec) if spec.provider == "openai" else LocalEmbeddingsProvider(spec)


class GatewayEndpoint:
    """An LLM endpoint: call ``chat``, ``chat_stream``, ``completions``, ``embeddings``."""

    def __init__(
        self,
        name: str,
        spec: LLMEndpointSpec,
        *,
        prompts: PromptSource | None = None,
        limits_dir: Path | None = None,
        limits_store: BucketStore | None = None,
        router: Router | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        target: Target | None = None,
    ) -> None:
        """``limits_dir`` holds the rate-limit file the serving workers share (default:
        limits of this process only); ``target`` is where ``provider: mlflow`` models are
        registered and traces go (``traces: true``); ``limits_store``, ``router`` and
        ``sleep`` are for tests."""
        self.name = name
        self.spec = spec
        self._prompts = prompts
        self._prompt_cache: dict[str, tuple[float, str, str]] = {}
        self._providers: dict[str, Provider] = {
            m.name: make_provider(m, target) for m in spec.models
        }
        self.tracer: Tracer | None = None
        if spec.traces:
            if target is None:
                raise ValueError(
                    f"endpoint {name!r} records traces: GatewayEndpoint needs the target "
                    "whose tracking store holds them (target=ws.target)"
                )
            self.tracer = Tracer(name, target)
        breaker = spec.circuit_breaker
        self.breakers = {
            m.name: CircuitBreaker(breaker.failures, breaker.reset_s) for m in spec.models
        }
        self.router = router or Router(spec)
        self.limiter: RateLimiter | None = None
        if spec.rate_limits is not None:
            store = limits_store or open_store(spec.rate_limits, name, limits_dir)
            self.limiter = RateLimiter(name, spec.rate_limits, store)
        self.cache = ResponseCache(spec.cache.ttl_s, spec.cache.max_entries) if spec.cache else None
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"GatewayEndpoint({self.name!r}, routes={[m.name for m in self.spec.models]})"

    # -- the API -----------------------------------------------------------------------

    async def chat(
        self, body: dict[str, Any], *, user: str | None, request_id: str
    ) -> GatewayResult:
        return await self._answer("chat", body, user, request_id)

    async def completions(
        self, body: dict[str, Any], *, user: str | None, request_id: str
    ) -> GatewayResult:
        return await self._answer("completions", body, user, request_id)

    async def embeddings(
        self, body: dict[str, Any], *, user: str | None, request_id: str
    ) -> GatewayResult:
        return await self._answer("embeddings", body, user, request_id)

    def chat_stream(
        self, body: dict[str, Any], *, user: str | None, request_id: str
    ) -> GatewayStream:
        """A streamed chat: ``await stream.start()`` (None, or the error result to answer
        instead), then iterate its SSE chunks; ``stream.result`` once it has ended."""
        from lakeforge.llm._stream import GatewayStream

        return GatewayStream(self, body, user, request_id)

    def models(self) -> list[dict[str, Any]]:
        """This endpoint's entry of ``/v1/models``."""
        return [
            {
                "id": self.name,
                "object": "model",
                "created": 0,
                "owned_by": "lakeforge",
                "lakeforge": {"type": self.spec.type, "routes": [m.name for m in self.spec.models]},
            }
        ]

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        if self.limiter is not None:
            await self.limiter.store.aclose()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.close)

    # -- one request -------------------------------------------------------------------

    def _result(
        self, call: Call, status: int, body: dict[str, Any] | None, **fields: Any
    ) -> GatewayResult:
        latency = (time.perf_counter() - call.started) * 1000
        return GatewayResult(
            status, body, self.name, latency_ms=latency, trace=call.trace, **fields
        )

    def _refused(self, call: Call, refusal: Refused, **fields: Any) -> GatewayResult:
        code = "rate_limited" if refusal.status == 429 else None
        body = error_body(refusal.message, refusal.kind, code)
        return self._result(
            call,
            refusal.status,
            body,
            error=refusal.message,
            retry_after_s=refusal.retry_after_s,
            **fields,
        )

    async def _begin(
        self, kind: Kind, body: dict[str, Any], user: str | None, request_id: str
    ) -> Call:
        """Parse and admit a request (raises Refused)."""
        started = time.perf_counter()
        if self.spec.type != kind:
            raise Refused(
                400,
                f"endpoint {self.name!r} serves {self.spec.type}, not {kind}",
                "invalid_request_error",
            )
        if not isinstance(body, dict):
            raise Refused(400, "the request body must be a JSON object", "invalid_request_error")
        extension = body.get("lakeforge") or {}
        if not isinstance(extension, dict):
            raise Refused(400, "lakeforge: must be an object", "invalid_request_error")
        variables = extension.get("prompt_variables") or {}
        if not isinstance(variables, dict):
            raise Refused(
                400, "lakeforge.prompt_variables: must be an object", "invalid_request_error"
            )
        upstream = {k: v for k, v in body.items() if k != "lakeforge"}
        call = Call(
            kind,
            upstream,
            variables,
            bool(extension.get("escalate")),
            user,
            request_id,
            started,
            input_tokens(kind, upstream),
            trace=[] if self.spec.traces else None,
        )
        if self.limiter is not None:
            refused = await self.limiter.admit(user, call.tokens_in)
            if refused is not None:
                wait, label = refused
                raise Refused(
                    429,
                    f"rate limit of endpoint {self.name!r} exceeded ({label}); "
                    f"retry after {wait:.2f} s",
                    "rate_limit_exceeded",
                    retry_after_s=wait,
                )
            call.admitted = True
        return call

    async def _settle(self, call: Call, tokens: int) -> None:
        if self.limiter is not None and call.admitted:
            await self.limiter.settle(call.user, call.tokens_in, tokens)

    def _prompt(self, ref: str) -> tuple[str, str]:
        now = time.monotonic()
        held = self._prompt_cache.get(ref)
        if held is not None and now - held[0] < _PROMPT_TTL_S:
            return held[1], held[2]
        if self._prompts is None:
            raise Refused(
                500,
                f"endpoint {self.name!r} names prompt {ref!r} but the gateway has no prompt source",
                "server_error",
            )
        try:
            template, version = self._prompts(ref)
        except LakeforgeError as exc:
            raise Refused(500, f"prompt {ref!r}: {exc.message}", "server_error") from None
        self._prompt_cache[ref] = (now, template, version)
        return template, version

    def _upstream_body(self, call: Call, route: LLMModelSpec) -> tuple[dict[str, Any], str | None]:
        """The body sent to ``route`` and the prompt version it carries."""
        body = {**call.body, "model": route.model}
        ref = route.prompt or self.spec.prompt
        if ref is None:
            return body, None
        template, version = self._prompt(ref)
        missing = sorted({v for v in _VARIABLE.findall(template) if v not in call.variables})
        if missing:
            raise Refused(
                400,
                f"prompt {version} needs lakeforge.prompt_variables {', '.join(missing)}",
                "invalid_request_error",
            )
        system = _VARIABLE.sub(lambda m: str(call.variables[m.group(1)]), template)
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise Refused(400, "messages: must be a list", "invalid_request_error")
        body["messages"] = [{"role": "system", "content": system}, *messages]
        return body, version

    def _fields(self, route: LLMModelSpec, prompt: str | None) -> dict[str, Any]:
        return {
            "route": route.name,
            "model": route.model,
            "provider": route.provider,
            "prompt": prompt,
        }

    async def _answer(
        self, kind: Kind, body: dict[str, Any], user: str | None, request_id: str
    ) -> GatewayResult:
        call = Call(kind, {}, {}, False, user, request_id, time.perf_counter(), 0)
        try:
            call = await self._begin(kind, body, user, request_id)
            if call.body.get("stream"):
                raise Refused(400, "stream: true goes through chat_stream", "invalid_request_error")
            return await self._routes(call)
        except Refused as refusal:
            return self._refused(call, refusal)

    async def _routes(self, call: Call) -> GatewayResult:
        failures: list[str] = []
        attempts = 0
        last: UpstreamError | None = None
        order = self.router.order(call.tokens_in, escalate=call.escalate)
        for route in order:
            body, prompt = self._upstream_body(call, route)
            provider = self._providers[route.name]
            key = None
            if self.cache is not None:
                # a route whose model swaps (an alias) keys its entries by the version
                serving = getattr(provider, "serving", None)
                key = self.cache.key(route.name, prompt, body, serving)
                hit = self.cache.get(key)
                if hit is not None:
                    return await self._done(call, route, prompt, body, hit, attempts, cached=True)
            breaker = self.breakers[route.name]
            if not breaker.allow():
                failures.append(f"{route.name}: circuit open")
                continue
            for retry in range(route.max_retries + 1):
                attempts += 1
                began = time.time_ns()
                try:
                    answer = await provider.request(PATHS[call.kind], body)
                except UpstreamError as exc:
                    call.attempted(route, began, exc)
                    last = exc
                    if exc.client_error:
                        breaker.release()
                        await self._settle(call, call.tokens_in)
                        return self._result(
                            call,
                            exc.status or 400,
                            error_body(exc.message, "invalid_request_error"),
                            attempts=attempts,
                            error=exc.message,
                            **self._fields(route, prompt),
                        )
                    breaker.failure()
                    if not exc.retryable or retry == route.max_retries or not breaker.allow():
                        break
                    delay = backoff_s(retry, route.backoff_s, exc.retry_after_s)
                    log.warning(
                        "endpoint %s, route %s: %s; retry in %.2f s",
                        self.name,
                        route.name,
                        short(exc),
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                call.attempted(route, began, None)
                breaker.success()
                if key is not None and self.cache is not None:
                    self.cache.put(key, answer)
                return await self._done(call, route, prompt, body, answer, attempts)
            assert last is not None
            failures.append(f"{route.name}: {short(last)}")
        return self._failed(call, failures, last, attempts)

    def _failed(
        self, call: Call, failures: list[str], last: UpstreamError | None, attempts: int
    ) -> GatewayResult:
        message = f"endpoint {self.name!r}: no route answered ({'; '.join(failures)})"
        log.warning("%s", message)
        status, kind, retry_after = 502, "upstream_error", None
        if last is None:
            status, kind = 503, "service_unavailable"  # every breaker open
        elif last.status == 429:
            status, kind, retry_after = 429, "rate_limit_exceeded", last.retry_after_s
        elif last.status is None and "timed out" in last.message:
            status = 504
        return self._result(
            call,
            status,
            error_body(message, kind),
            attempts=attempts,
            error=message,
            retry_after_s=retry_after,
        )

    async def _done(
        self,
        call: Call,
        route: LLMModelSpec,
        prompt: str | None,
        sent: dict[str, Any],
        answer: dict[str, Any],
        attempts: int,
        *,
        cached: bool = False,
    ) -> GatewayResult:
        tokens_in, tokens_out, _ = usage_of(call.kind, sent, answer)
        cost = (
            0.0
            if cached and route.price is not None
            else cost_of(route.price, tokens_in, tokens_out)
        )
        # a cached answer spends no upstream tokens: give the estimate back
        await self._settle(call, 0 if cached else tokens_in + tokens_out)
        return self._result(
            call,
            200,
            answer,
            attempts=attempts,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cost=cost,
            cached=cached,
            **self._fields(route, prompt),
        )
