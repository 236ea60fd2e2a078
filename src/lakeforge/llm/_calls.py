"""What a request carries on its way through the gateway, and the result it ends as."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lakeforge.llm._providers import UpstreamError
from lakeforge.project import LLMModelSpec

PromptSource = Callable[[str], tuple[str, str]]
"""``"name@alias"`` -> (template text, ``"name/version"``)."""

Kind = Literal["chat", "completions", "embeddings"]
PATHS: dict[str, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}


@dataclass
class Attempt:
    """One call to a route, as a trace shows it (wall-clock nanoseconds)."""

    route: str
    provider: str
    model: str
    start_ns: int
    end_ns: int
    status: int | None  # None: no HTTP answer (connection error, timeout)
    error: str | None = None  # the failure's kind (``short``), never upstream text


@dataclass
class GatewayResult:
    """One request's outcome: the HTTP answer and what its log row needs."""

    status: int
    body: dict[str, Any] | None
    endpoint: str
    model: str | None = None
    provider: str | None = None
    route: str | None = None
    prompt: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    cached: bool = False
    error: str | None = None
    retry_after_s: float | None = None
    trace: list[Attempt] | None = None  # the attempts, when the endpoint records traces


class Refused(Exception):
    """The request ends here with ``status`` (not the upstream's fault)."""

    def __init__(self, status: int, message: str, kind: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.retry_after_s = (
            status,
            message,
            kind,
            retry_after_s,
        )


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


@dataclass
class Call:
    """A request on its way: parsed once, shared by its attempts."""

    kind: Kind
    body: dict[str, Any]
    variables: dict[str, Any]
    escalate: bool
    user: str | None
    request_id: str
    started: float
    tokens_in: int
    admitted: bool = False
    trace: list[Attempt] | None = None  # filled when the endpoint records traces

    def attempted(self, route: LLMModelSpec, start_ns: int, exc: UpstreamError | None) -> None:
        """Record an attempt on ``route`` that began at ``start_ns`` (if tracing)."""
        if self.trace is not None:
            status, error = (200, None) if exc is None else (exc.status, short(exc))
            self.trace.append(
                Attempt(
                    route.name, route.provider, route.model, start_ns, time.time_ns(), status, error
                )
            )


def short(exc: UpstreamError) -> str:
    """An upstream failure without its (untrusted) text: status or connection error."""
    if exc.status is not None:
        return f"HTTP {exc.status}"
    return exc.message.removeprefix("connection to the upstream ")
