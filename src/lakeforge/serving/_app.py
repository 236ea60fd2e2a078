"""The serving ASGI application one worker process runs.

Routes:

- ``POST /serving-endpoints/{name}/invocations`` and ``POST /invocations`` (when one
  endpoint is served): the MLflow scoring protocol, ``{"predictions": ...}`` back.
- ``POST /v2/models/{name}/infer``: the Open Inference Protocol; ``GET /v2/models/{name}``,
  ``/v2/models/{name}/ready``, ``/v2/health/live``, ``/v2/health/ready``.
- ``POST /v1/chat/completions`` (streamed or not), ``/v1/completions``, ``/v1/embeddings``
  and ``GET /v1/models``: the OpenAI-compatible API of the LLM endpoints (see
  :mod:`lakeforge.serving._llm_routes`).
- ``POST /vector-indexes/{name}/query``: search a served vector index (see
  :mod:`lakeforge.serving._vector_routes`).
- ``GET /ping`` (alive), ``GET /health`` (ready: every entity loaded), ``GET /metrics``,
  ``GET /version`` (the MLflow version, as ``mlflow models serve`` answers).

A V2 request may also send one ``[rows, n_features]`` tensor (FP*, INT*, UINT*) to a model
with a column signature: its columns are the signature's, in order. V2 errors carry the
protocol's ``{"error": message}`` (and ``error_code``).

Errors: 400 (input that fails the signature, or that the model fails on: no rows, nulls in
required columns; named, as MLflow answers 400 there), 401/403 (bearer token), 404
(unknown endpoint), 413 (payload over ``max_payload_mb``), 500 (the model raised; the
trace is logged, not returned), 503 (not loaded yet), 504 (over ``timeout_s``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from lakeforge.project import EndpointSpec, LLMEndpointSpec, VectorIndexSpec
from lakeforge.serving import _llm_routes, _metrics, _vector_routes
from lakeforge.serving._entities import Entity
from lakeforge.serving._model import LoadedModel
from lakeforge.serving._protocol import (
    Parsed,
    Receive,
    RequestError,
    Scope,
    Send,
    check_token,
    dumps,
    header,
    jsonable,
    parse_mlflow,
    parse_v2,
    read_body,
    v2_outputs,
)
from lakeforge.serving._runtime import Endpoint, Runtime, all_entities

ENDPOINTS_ENV = "LAKEFORGE_SERVE_ENDPOINTS"
LLM_ENDPOINTS_ENV = "LAKEFORGE_SERVE_LLM_ENDPOINTS"
VECTOR_INDEXES_ENV = "LAKEFORGE_SERVE_VECTOR_INDEXES"
log = logging.getLogger("lakeforge.serving")
_JSON = [(b"content-type", b"application/json")]
V2_DATATYPES = {  # MLflow column types as the Open Inference Protocol names them
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "datetime": "BYTES",
}


# -- the ASGI application ----------------------------------------------------------------


class ServingApp:
    """A raw ASGI app: a handful of routes, no framework on the hot path."""

    def __init__(
        self,
        project_dir: str,
        target: str,
        specs: dict[str, EndpointSpec],
        llm_specs: dict[str, LLMEndpointSpec] | None = None,
        index_specs: dict[str, VectorIndexSpec] | None = None,
    ) -> None:
        self._args = (project_dir, target, specs, llm_specs or {}, index_specs or {})
        self.runtime: Runtime | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/v1/"):
            assert self.runtime is not None
            await _llm_routes.handle(self.runtime, scope, receive, send)
            return
        status, body, headers = await self._route(scope, receive)
        # A declared length lets the server write the response in one piece (no chunking).
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.runtime = Runtime(*self._args)
                    self.runtime.start()
                except Exception as exc:
                    log.exception("serving could not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.runtime is not None:
                    await self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, bytes, list[Any]]:
        runtime = self.runtime
        assert runtime is not None
        path: str = scope["path"].rstrip("/") or "/"
        method: str = scope["method"]
        parts = path.strip("/").split("/")
        if method == "GET":
            return self._get(runtime, path, parts)
        if method != "POST":
            return _error(
                RequestError(405, f"{method} is not allowed on {path}", "METHOD_NOT_ALLOWED")
            )
        if len(parts) == 3 and parts[0] == "vector-indexes" and parts[2] == "query":
            return await _vector_routes.query(runtime, parts[1], scope, receive)
        v2 = False
        if path == "/invocations":
            if len(runtime.endpoints) != 1:
                return _not_found(runtime, "/invocations serves only when one endpoint is served")
            name = next(iter(runtime.endpoints))
        elif len(parts) == 3 and parts[0] == "serving-endpoints" and parts[2] == "invocations":
            name = parts[1]
        elif len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "infer":
            name, v2 = parts[2], True
        else:
            return _error(RequestError(404, f"no route {method} {path}", "ENDPOINT_NOT_FOUND"))
        endpoint = runtime.endpoints.get(name)
        if endpoint is None:
            return _not_found(runtime, f"endpoint {name!r} is not served", v2)
        return await self._invoke(runtime, endpoint, scope, receive, v2)

    def _get(self, runtime: Runtime, path: str, parts: list[str]) -> tuple[int, bytes, list[Any]]:
        if path in ("/ping", "/v2/health/live"):
            return 200, b"{}", _JSON
        if path in ("/health", "/v2/health/ready"):
            state = {
                f"{ep.name}/{e.name}": (
                    {"model": e.model_name, "version": e.current.version}
                    if e.current
                    else {"model": e.model_name, "loading": True, "error": e.error}
                )
                for ep in runtime.endpoints.values()
                for e in all_entities(ep)
            }
            ready = runtime.ready
            return (200 if ready else 503), dumps({"ready": ready, "entities": state}), _JSON
        if path == "/metrics":
            body, content_type = _metrics.exposition()
            return 200, body, [(b"content-type", content_type.encode())]
        if path == "/version":
            from mlflow.version import VERSION

            return 200, VERSION.encode(), _JSON
        if path == "/serving-endpoints":
            return 200, dumps({"endpoints": sorted(runtime.endpoints)}), _JSON
        if len(parts) in (3, 4) and parts[:2] == ["v2", "models"]:
            endpoint = runtime.endpoints.get(parts[2])
            if endpoint is None:
                return _not_found(runtime, f"model {parts[2]!r} is not served", v2=True)
            loaded = [e.current for e in endpoint.entities if e.current is not None]
            if len(parts) == 4 and parts[3] == "ready":
                return (200 if len(loaded) == len(endpoint.entities) else 503), b"{}", _JSON
            meta = {
                "name": endpoint.name,
                "versions": [m.version for m in loaded],
                "platform": "lakeforge",
                "inputs": [
                    {"name": c, "datatype": V2_DATATYPES.get(t, "BYTES"), "shape": [-1]}
                    for c, t, _ in (loaded[0].columns or [])
                ]
                if loaded
                else [],
                "outputs": [],
            }
            return 200, dumps(meta), _JSON
        return _error(RequestError(404, f"no route GET {path}", "ENDPOINT_NOT_FOUND"))

    async def _invoke(
        self, runtime: Runtime, endpoint: Endpoint, scope: Scope, receive: Receive, v2: bool
    ) -> tuple[int, bytes, list[Any]]:
        started = time.perf_counter()
        headers = dict(scope["headers"])
        request_id = uuid.uuid4().hex
        entity = endpoint.choose()
        model = entity.current
        body = b""
        client_id = header(headers, b"x-client-request-id")
        try:
            check_token(endpoint.name, endpoint.tokens, headers)
            body = await read_body(receive, headers, endpoint.spec.max_payload_mb)
            if model is None:
                raise RequestError(503, f"endpoint {endpoint.name!r} is still loading", "NOT_READY")
            content_type = header(headers, b"content-type") or "application/json"
            if not v2 and not content_type.startswith("application/json"):  # CSV, Parquet
                loop = asyncio.get_running_loop()
                call = loop.run_in_executor(None, model.invoke_mlflow, body, content_type)
                status, response = await _wait(call, endpoint.spec.timeout_s)
            else:
                parsed, v2_id = (
                    parse_v2(body, client_id, model.names)
                    if v2
                    else (parse_mlflow(body, client_id), None)
                )
                client_id = parsed.client_request_id
                predictions = await _score(entity, model, parsed, v2, endpoint.spec.timeout_s)
                status, response = (
                    200,
                    _answer(endpoint, model, predictions, v2, v2_id or request_id),
                )
                if endpoint.shadow is not None and endpoint.shadow.current is not None:
                    _shadow(runtime, endpoint, parsed, v2)
        except RequestError as exc:
            status, response = exc.status, exc.body(v2)
        except Exception:
            log.exception("request %s to %s/%s failed", request_id, endpoint.name, entity.name)
            status = 500
            response = RequestError(
                500,
                f"the model raised an error (request id {request_id}); see the server log",
                "INTERNAL_ERROR",
            ).body(v2)
        elapsed = time.perf_counter() - started
        version = model.version if model is not None else ""
        _log(endpoint, entity, version, request_id, client_id, status, elapsed, body, response)
        _metrics.observe(endpoint.name, entity.name, version, status, elapsed)
        out_headers = [*_JSON, (b"x-request-id", request_id.encode())]
        if status == 401:
            out_headers.append((b"www-authenticate", b"Bearer"))
        return status, response, out_headers


def _answer(endpoint: Endpoint, model: Any, predictions: Any, v2: bool, request_id: str) -> bytes:
    """The response body: MLflow's ``{"predictions": ...}`` or a V2 inference response."""
    if not v2:
        return dumps({"predictions": jsonable(predictions)})
    return dumps(
        {
            "model_name": endpoint.name,
            "model_version": model.version,
            "id": request_id,
            "outputs": v2_outputs(predictions),
        }
    )


INLINE_ROWS = 256
"""A request of at most this many rows to a matrix model (a LightGBM Booster: bounded,
fast, no Python code of the user's), arriving alone, is scored on the event loop's thread:
the hand-off to the batcher thread and back costs more than the trees."""


async def _score(
    entity: Entity, model: LoadedModel, parsed: Parsed, v2: bool, timeout_s: float
) -> Any:
    frame = model.frame(parsed)
    try:
        if frame is not None:
            batcher = entity.batcher
            assert batcher is not None
            inline = model.matrix_fn is not None and len(frame) <= INLINE_ROWS
            if inline and await batcher.alone():
                return model.predict_frame(frame)
            return await _wait(batcher.submit(model, frame), timeout_s)
        loop = asyncio.get_running_loop()
        return await _wait(loop.run_in_executor(None, model.predict_request, parsed, v2), timeout_s)
    except RequestError:
        raise
    except Exception as exc:
        refusal = model.refusal(parsed)  # the input's fault (a 400), or the model's (a 500)
        if refusal is None:
            raise
        log.info("%s/%s refused input: %s (%r)", entity.endpoint, entity.name, refusal.message, exc)
        raise refusal from exc


async def _wait(call: Awaitable[Any], timeout_s: float) -> Any:
    """``call``'s result, or a 504 once ``timeout_s`` has passed (the call is abandoned)."""
    future = asyncio.ensure_future(call)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        future.cancel()

    timer = asyncio.get_running_loop().call_later(timeout_s, expire)
    try:
        return await future
    except asyncio.CancelledError:
        if not expired:
            raise
        raise RequestError(
            504, f"scoring took longer than the endpoint's timeout_s ({timeout_s:g} s)", "TIMEOUT"
        ) from None
    finally:
        timer.cancel()


def _shadow(runtime: Runtime, endpoint: Endpoint, parsed: Parsed, v2: bool) -> None:
    """Send a copy of the request to the shadow entity; log its answer, never return it."""
    shadow = endpoint.shadow
    assert shadow is not None

    async def call() -> None:
        started = time.perf_counter()
        model = shadow.current
        if model is None:
            return
        try:
            predictions = await _score(shadow, model, parsed, v2, endpoint.spec.timeout_s)
            status, response = 200, dumps({"predictions": jsonable(predictions)})
        except RequestError as exc:
            status, response = exc.status, exc.body()
        except Exception:
            log.exception("shadow %s of %s failed", shadow.name, endpoint.name)
            status, response = 500, b'{"error_code": "INTERNAL_ERROR"}'
        elapsed = time.perf_counter() - started
        request_id = uuid.uuid4().hex
        _log(
            endpoint,
            shadow,
            model.version,
            request_id,
            parsed.client_request_id,
            status,
            elapsed,
            parsed.body,
            response,
        )
        _metrics.observe(endpoint.name, shadow.name, model.version, status, elapsed)

    task = asyncio.get_running_loop().create_task(call())
    runtime.shadow_tasks.add(task)
    task.add_done_callback(runtime.shadow_tasks.discard)


def _log(
    endpoint: Endpoint,
    entity: Entity,
    version: str,
    request_id: str,
    client_id: str | None,
    status: int,
    elapsed: float,
    request: bytes,
    response: bytes,
) -> None:
    """Spool the request for the inference table (sampled); durable when this returns."""
    if endpoint.flusher is None or endpoint.spec.inference_table is None:
        return
    sample = endpoint.spec.inference_table.sample
    if sample < 1.0 and random.random() >= sample:
        return
    endpoint.flusher.log(
        {
            "request_id": request_id,
            "client_request_id": client_id,
            "timestamp_ms": time.time_ns() // 1_000_000,
            "status_code": status,
            "execution_time_ms": round(elapsed * 1000, 3),
            "sampling_fraction": sample,
            "request": request.decode("utf-8", "replace"),
            "response": response.decode("utf-8", "replace"),
            "endpoint_name": endpoint.name,
            "served_entity": entity.name,
            "model_name": entity.model_name,
            "model_version": version,
            "alias": entity.alias,
            "shadow": entity.shadow,
        }
    )


def _error(exc: RequestError, v2: bool = False) -> tuple[int, bytes, list[Any]]:
    return exc.status, exc.body(v2), _JSON


def _not_found(runtime: Runtime, message: str, v2: bool = False) -> tuple[int, bytes, list[Any]]:
    served = ", ".join(sorted(runtime.endpoints)) or "none"
    return _error(RequestError(404, f"{message} (served: {served})", "ENDPOINT_NOT_FOUND"), v2)


def create_app() -> ServingApp:
    """The app of one worker, configured by ``lakeforge serve`` through the environment."""
    specs = {
        name: EndpointSpec.model_validate(spec)
        for name, spec in json.loads(os.environ[ENDPOINTS_ENV]).items()
    }
    llm_specs = {
        name: LLMEndpointSpec.model_validate(spec)
        for name, spec in json.loads(os.environ.get(LLM_ENDPOINTS_ENV, "{}")).items()
    }
    index_specs = {
        name: VectorIndexSpec.model_validate(spec)
        for name, spec in json.loads(os.environ.get(VECTOR_INDEXES_ENV, "{}")).items()
    }
    return ServingApp(
        os.environ["LAKEFORGE_PROJECT_DIR"],
        os.environ["LAKEFORGE_TARGET"],
        specs,
        llm_specs,
        index_specs,
    )
