"""MLflow traces of an LLM endpoint's requests (``traces: true``), written in the background.

Each request becomes one trace in the target's tracking store, in the experiment
``llm-gateway/<endpoint>``: a root span named after the endpoint (the gateway call: its
status, route, model, provider, latency, attempts, tokens, cost, user; the client's
request as inputs, the answer as outputs) and one child span per provider attempt
(route, provider, model, status, latency; tokens on the one that answered). Its tags
``lakeforge.request_id`` and ``lakeforge.endpoint`` find it again.

The request path only puts the finished result on a bounded queue (a full queue drops
the trace and counts it in ``dropped``); one daemon thread per endpoint writes the traces
with MLflow's tracing API, whose own exporter logs them asynchronously. That exporter
follows MLflow's global tracking URI, so a tracing endpoint sets the process's URI to its
target's (a serving worker serves one target; ``use_target`` blocks for that target then
leave it as it is).

No secret reaches a trace: the spans carry what the payload table holds (the client's
body, the answer, errors the gateway wrote or redacted) and never a request header, so
neither the client's bearer token nor the upstream's API key.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from lakeforge.llm._calls import GatewayResult
    from lakeforge.project import Target

log = logging.getLogger("lakeforge.llm")
EXPERIMENT_PREFIX = "llm-gateway/"
_PINNED = threading.Lock()  # the tracers of a process share MLflow's one tracking URI


@dataclass
class _Item:
    result: GatewayResult
    request_id: str
    user: str | None
    request: bytes
    end_ns: int


def experiment_name(endpoint: str) -> str:
    """The MLflow experiment that holds ``endpoint``'s traces."""
    return EXPERIMENT_PREFIX + endpoint


class Tracer:
    """Writes one endpoint's traces from a background thread."""

    def __init__(self, endpoint: str, target: Target, max_queued: int = 10_000) -> None:
        self.endpoint = endpoint
        self.target = target
        self.dropped = 0
        self._queue: queue.Queue[_Item | None] = queue.Queue(max_queued)
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._experiment_id: str | None = None

    def __repr__(self) -> str:
        return f"Tracer({self.endpoint!r}, queued={self._queue.qsize()}, dropped={self.dropped})"

    def submit(
        self, result: GatewayResult, *, request_id: str, user: str | None, request: bytes
    ) -> None:
        """Queue a finished request's trace (never blocks; drops it when the queue is full)."""
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name=f"lakeforge-traces-{self.endpoint}", daemon=True
                    )
                    self._thread.start()
        try:
            self._queue.put_nowait(_Item(result, request_id, user, request, time.time_ns()))
        except queue.Full:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning(
                    "endpoint %s: the trace queue is full; %d trace(s) dropped so far",
                    self.endpoint,
                    self.dropped,
                )

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is queued (up to ``timeout_s``), then stop; flush MLflow's exporter."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout_s)
        import mlflow

        mlflow.flush_trace_async_logging()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write(item)
            except Exception:  # a trace is never worth a failed request or a dead thread
                log.exception("could not write the trace of request %s", item.request_id)

    def _experiment(self) -> str:
        if self._experiment_id is None:
            from lakeforge.tracking import client_for

            client = client_for(self.target)
            name = experiment_name(self.endpoint)
            found = client.get_experiment_by_name(name)
            self._experiment_id = found.experiment_id if found else client.create_experiment(name)
        return self._experiment_id

    def _write(self, item: _Item) -> None:
        import mlflow

        experiment = self._experiment()
        uri = self.target.mlflow_tracking_uri
        with _PINNED:
            if mlflow.get_tracking_uri() != uri:
                # MLflow's exporter writes to the tracking URI that was current when
                # tracing set up, and any change of that URI sets tracing up again: pin
                # this process's URI to the target's (a serving worker serves one target,
                # and use_target blocks for it then change nothing)
                mlflow.set_tracking_uri(uri)
                mlflow.set_registry_uri(uri)
            self._spans(item, experiment)

    def _spans(self, item: _Item, experiment: str) -> None:
        import mlflow
        from mlflow.entities import SpanType

        result = item.result
        try:
            inputs: Any = orjson.loads(item.request)
        except orjson.JSONDecodeError:
            inputs = item.request.decode("utf-8", "replace")
        attributes: dict[str, Any] = {
            "lakeforge.endpoint": result.endpoint,
            "lakeforge.request_id": item.request_id,
            "lakeforge.status": result.status,
            "lakeforge.route": result.route,
            "lakeforge.model": result.model,
            "lakeforge.provider": result.provider,
            "lakeforge.prompt": result.prompt,
            "lakeforge.latency_ms": round(result.latency_ms, 3),
            "lakeforge.attempts": result.attempts,
            "lakeforge.input_tokens": result.input_tokens,
            "lakeforge.output_tokens": result.output_tokens,
            "lakeforge.cost": result.cost,
            "lakeforge.cached": result.cached,
            "lakeforge.user": item.user,
            "lakeforge.error": result.error,
        }
        root = mlflow.start_span_no_context(
            name=self.endpoint,
            span_type=SpanType.CHAT_MODEL,
            inputs=inputs,
            attributes={k: v for k, v in attributes.items() if v is not None},  # JSON values
            tags={"lakeforge.request_id": item.request_id, "lakeforge.endpoint": self.endpoint},
            experiment_id=experiment,
            start_time_ns=item.end_ns - int(result.latency_ms * 1e6),
        )
        for attempt in result.trace or []:
            answered = attempt.error is None
            span_attributes: dict[str, Any] = {
                "lakeforge.route": attempt.route,
                "lakeforge.provider": attempt.provider,
                "lakeforge.model": attempt.model,
                "lakeforge.status": attempt.status if attempt.status is not None else -1,
                "lakeforge.latency_ms": round((attempt.end_ns - attempt.start_ns) / 1e6, 3),
            }
            if answered:
                span_attributes["lakeforge.input_tokens"] = result.input_tokens
                span_attributes["lakeforge.output_tokens"] = result.output_tokens
            else:
                span_attributes["lakeforge.error"] = attempt.error
            span = mlflow.start_span_no_context(
                name=attempt.route,
                span_type=SpanType.LLM,
                parent_span=root,
                attributes=span_attributes,
                start_time_ns=attempt.start_ns,
            )
            span.end(status="OK" if answered else "ERROR", end_time_ns=attempt.end_ns)
        root.end(
            outputs=result.body,
            status="OK" if result.status < 400 else "ERROR",
            end_time_ns=item.end_ns,
        )
