"""The OpenAI-compatible API of the LLM endpoints a worker serves.

Routes: ``POST /v1/chat/completions`` (``stream: true`` answers ``text/event-stream``,
each chunk sent as it comes), ``POST /v1/completions``, ``POST /v1/embeddings`` and
``GET /v1/models``. The body's ``model`` names the LLM endpoint (as LiteLLM's proxy and
MLflow's AI gateway do); its routes, fallbacks and limits are the gateway's
(:class:`lakeforge.llm.GatewayEndpoint`).

The user is the ``X-Lakeforge-User`` header, else the body's ``user``. Errors have
OpenAI's shape, ``{"error": {"message", "type", "code"}}``: 400, 401/403 (the endpoint's
bearer tokens, as for model endpoints), 404 (no such endpoint: the served ones named),
413, 429 (rate limited: ``Retry-After`` and ``retry-after-ms`` say when to try again),
5xx (upstream failures, as the gateway reports them). Every request to a served
endpoint is spooled for its log tables (:mod:`lakeforge.serving._llm_log`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from lakeforge.llm import GatewayResult
from lakeforge.serving import _llm_log, _metrics
from lakeforge.serving._protocol import (
    Receive,
    RequestError,
    Scope,
    Send,
    check_token,
    header,
    read_body,
)

if TYPE_CHECKING:
    from lakeforge.serving._runtime import LLMEndpoint, Runtime

log = logging.getLogger("lakeforge.serving")
_KINDS = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
}
_JSON = (b"content-type", b"application/json")
_SSE = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies: do not hold chunks back
]


async def handle(runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one request under ``/v1/``."""
    path: str = scope["path"].rstrip("/")
    method: str = scope["method"]
    headers = dict(scope["headers"])
    request_id = uuid.uuid4().hex
    if path == "/v1/models" and method == "GET":
        entries = [
            entry
            for llm in runtime.llm.values()
            if _allowed(llm, headers)
            for entry in llm.gateway.models()
        ]
        await _send(send, 200, {"object": "list", "data": entries}, request_id)
        return
    kind = _KINDS.get(path)
    if kind is None or method != "POST":
        status = 404 if kind is None and path != "/v1/models" else 405
        message = (
            f"no route {method} {path} (the API: POST {', POST '.join(_KINDS)}, GET /v1/models)"
        )
        code = "not_found" if status == 404 else "method_not_allowed"
        await _send(send, status, _error(status, message, code), request_id)
        return
    await _request(runtime, kind, headers, receive, send, request_id)


async def _request(
    runtime: Runtime,
    kind: str,
    headers: dict[bytes, bytes],
    receive: Receive,
    send: Send,
    request_id: str,
) -> None:
    started = time.perf_counter()
    limit_mb = max((llm.spec.max_payload_mb for llm in runtime.llm.values()), default=1.0)
    raw = b""
    llm: LLMEndpoint | None = None
    try:
        raw = await read_body(receive, headers, limit_mb)
        body = _parse(raw)
        llm = _endpoint(runtime, body.get("model"))
        check_token(llm.name, llm.tokens, headers)
        if len(raw) > llm.spec.max_payload_mb * 1024 * 1024:
            raise RequestError(
                413,
                f"the payload is larger than endpoint {llm.name!r}'s max_payload_mb "
                f"({llm.spec.max_payload_mb:g} MB)",
            )
    except RequestError as exc:
        code = "model_not_found" if exc.status == 404 else exc.error_code.lower()
        error = _error(exc.status, exc.message, code)
        await _send(send, exc.status, error, request_id, auth=exc.status == 401)
        if llm is not None:  # a refused request to a served endpoint is logged too
            _unanswered(llm, exc.status, error, raw, request_id, headers, started, exc.message)
        return
    user = header(headers, b"x-lakeforge-user") or _text(body.get("user"))
    gateway = llm.gateway
    result: GatewayResult | None
    try:
        if kind == "chat" and body.get("stream"):
            result = await _stream(llm, body, user, request_id, receive, send)
        else:
            call = {"chat": gateway.chat, "completions": gateway.completions}.get(
                kind, gateway.embeddings
            )
            result = await call(body, user=user, request_id=request_id)
            await _send(
                send, result.status, result.body, request_id, retry_after=result.retry_after_s
            )
    except Exception:
        log.exception("request %s to LLM endpoint %s failed", request_id, llm.name)
        message = f"the gateway failed (request id {request_id}); see the server log"
        error = _error(500, message, "internal_error")
        await _send(send, 500, error, request_id)
        _unanswered(llm, 500, error, raw, request_id, headers, started, message, user)
        return
    if result is None:  # 499: the client closed the connection mid-stream (nginx's code)
        message = "the client closed the connection before the stream ended"
        _unanswered(llm, 499, None, raw, request_id, headers, started, message, user)
        return
    _log(llm, result, raw, request_id, headers, user, time.perf_counter() - started)


async def _stream(
    llm: LLMEndpoint,
    body: dict[str, Any],
    user: str | None,
    request_id: str,
    receive: Receive,
    send: Send,
) -> GatewayResult | None:
    """Relay a streamed chat chunk by chunk; its result once it ended (None: client left)."""
    stream = llm.gateway.chat_stream(body, user=user, request_id=request_id)
    refused = await stream.start()
    if refused is not None:
        await _send(
            send, refused.status, refused.body, request_id, retry_after=refused.retry_after_s
        )
        return refused
    headers = [*_SSE, (b"x-request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    # the body has been read: the next message is the client's disconnect
    gone = asyncio.ensure_future(receive())
    try:
        async for chunk in stream:
            if gone.done():  # stop reading the upstream for nobody
                await stream.aclose()
                return None
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Exception:  # the status is sent: end the stream, log the failure
        log.exception("stream %s of LLM endpoint %s failed", request_id, llm.name)
        message = f"the stream failed (request id {request_id}); see the server log"
        return GatewayResult(500, None, llm.name, error=message)
    finally:
        gone.cancel()
        await send({"type": "http.response.body", "body": b""})
    return stream.result


def _unanswered(
    llm: LLMEndpoint,
    status: int,
    body: dict[str, Any] | None,
    raw: bytes,
    request_id: str,
    headers: dict[bytes, bytes],
    started: float,
    error: str,
    user: str | None = None,
) -> None:
    """Log a request the gateway did not answer (refused before it, or it failed)."""
    elapsed = time.perf_counter() - started
    result = GatewayResult(status, body, llm.name, latency_ms=elapsed * 1000, error=error)
    _log(
        llm, result, raw, request_id, headers, user or header(headers, b"x-lakeforge-user"), elapsed
    )


def _log(
    llm: LLMEndpoint,
    result: GatewayResult,
    raw: bytes,
    request_id: str,
    headers: dict[bytes, bytes],
    user: str | None,
    elapsed: float,
) -> None:
    """Spool the request's row (durable when this returns) and count it."""
    client_id = header(headers, b"x-client-request-id")
    llm.flusher.log(
        _llm_log.record(
            result, request_id=request_id, client_request_id=client_id, user=user, request=raw
        )
    )
    tracer = llm.gateway.tracer
    if tracer is not None:  # traces: true; written by the tracer's thread
        tracer.submit(result, request_id=request_id, user=user, request=raw)
    _metrics.observe(llm.name, result.route or "-", result.model or "-", result.status, elapsed)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(400, f"the request body is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    return body


def _endpoint(runtime: Runtime, name: object) -> LLMEndpoint:
    served = ", ".join(sorted(runtime.llm)) or "none"
    if not isinstance(name, str):
        raise RequestError(400, f"model: name the LLM endpoint to call (served: {served})")
    llm = runtime.llm.get(name)
    if llm is None:
        raise RequestError(404, f"model {name!r} is not a served LLM endpoint (served: {served})")
    return llm


def _allowed(llm: LLMEndpoint, headers: dict[bytes, bytes]) -> bool:
    try:
        check_token(llm.name, llm.tokens, headers)
    except RequestError:
        return False
    return True


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _error(status: int, message: str, code: str) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "code": code}}


async def _send(
    send: Send,
    status: int,
    body: dict[str, Any] | None,
    request_id: str,
    *,
    retry_after: float | None = None,
    auth: bool = False,
) -> None:
    payload = orjson.dumps(body)
    headers = [
        _JSON,
        (b"content-length", str(len(payload)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if retry_after is not None:
        # Retry-After takes whole seconds; OpenAI's clients also read retry-after-ms
        headers.append((b"retry-after", str(max(1, math.ceil(retry_after))).encode()))
        headers.append((b"retry-after-ms", str(max(1, math.ceil(retry_after * 1000))).encode()))
    if auth:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
