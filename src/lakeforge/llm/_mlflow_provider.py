"""``provider: mlflow``: a local model packaged with MLflow, answering as an upstream would.

The route's ``model`` is ``NAME@ALIAS`` or ``NAME/VERSION`` in the target's registry. The
pyfunc is loaded once per worker (on the first request, in a thread) and each call runs
in a thread, so the event loop keeps serving meanwhile. An alias moved later takes effect
when the server restarts.

What the pyfunc's ``predict`` is given (one dict, the shape of MLflow's ``ChatModel``
input)::

    {"messages": [{"role": "user", "content": "..."}, ...], "max_tokens": 64, ...}  # chat
    {"prompt": "...", "max_tokens": 64, ...}                                        # completions

with those of ``max_tokens``, ``temperature``, ``top_p``, ``stop`` and ``n`` that the
request set. A model logged with a signature gets only the fields its signature names,
and MLflow hands them over as a one-row DataFrame (``model_input["messages"][0]``): log
one with e.g. ``infer_signature({"messages": [{"role": "user", "content": "hi"}]}, "ok")``.
What it may return: a string; a list, Series or one-column DataFrame whose
first item is a string; an OpenAI chat completion dict (what ``ChatModel`` returns:
``choices[0].message.content``, its ``usage`` kept); or a ``ResponsesAgent`` response
(``output[].content[].text``). When the model reports no usage, the answer's ``usage``
is the gateway's own count (:func:`lakeforge.llm.count_tokens`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from lakeforge.lakehouse import TableName
from lakeforge.llm._cost import count_tokens, input_tokens
from lakeforge.llm._providers import UpstreamError
from lakeforge.project import LLMModelSpec

if TYPE_CHECKING:
    from lakeforge.project import Target

log = logging.getLogger("lakeforge.llm")
PARAMS = ("max_tokens", "temperature", "top_p", "stop", "n")


def model_uri(model: str, catalog: str) -> str:
    """``models:/CATALOG.SCHEMA.NAME@ALIAS`` (or ``/VERSION``) of a route's ``model``; a
    ``schema.name`` gets the target's ``catalog``, as everywhere in the registry."""
    name, mark, ref = model.partition("@") if "@" in model else model.rpartition("/")
    qualified = TableName.parse(name, default_catalog=catalog, kind="model")
    return f"models:/{qualified}{mark}{ref}"


def text_of(output: Any) -> tuple[str, dict[str, Any] | None]:
    """The text a pyfunc returned and its usage, if it reported one (TypeError if none)."""
    if isinstance(output, str):
        return output, None
    if isinstance(output, dict):
        choices = output.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            first = choices[0]
            message = first.get("message") or {}
            text = message.get("content") if isinstance(message, dict) else None
            text = text if text is not None else first.get("text")
            if isinstance(text, str):
                usage = output.get("usage")
                return text, usage if isinstance(usage, dict) else None
        items = output.get("output")
        if isinstance(items, list):  # a ResponsesAgent response
            texts: list[str] = [
                part["text"]
                for item in items
                if isinstance(item, dict)
                for part in item.get("content") or []
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
            if texts:
                return "".join(texts), None
        raise TypeError("a dict without choices[0].message.content nor output[].content[].text")
    if hasattr(output, "iloc"):  # a pandas Series or DataFrame
        first = output.iloc[0, 0] if getattr(output, "ndim", 1) == 2 else output.iloc[0]
        return text_of(first)
    if isinstance(output, list | tuple) and output:
        return text_of(output[0])
    raise TypeError(type(output).__name__)


class MlflowProvider:
    """A registered pyfunc, loaded once per worker, called in a thread."""

    def __init__(self, spec: LLMModelSpec, target: Target | None) -> None:
        if target is None:
            raise ValueError(
                f"route {spec.name!r} (provider mlflow) needs the target whose registry "
                "holds its model: GatewayEndpoint(..., target=ws.target)"
            )
        self.spec = spec
        self._target = target
        self._model: Any = None
        self._fields: frozenset[str] | None = None  # the signature's inputs, if it has one
        self._loading = threading.Lock()

    def __repr__(self) -> str:
        return f"MlflowProvider(route={self.spec.name!r}, model={self.spec.model!r})"

    def _load(self) -> Any:
        with self._loading:  # concurrent first requests load the model once
            if self._model is None:
                import mlflow

                from lakeforge.tracking import use_target

                with use_target(self._target):
                    uri = model_uri(self.spec.model, self._target.catalog)
                    model = mlflow.pyfunc.load_model(uri)
                schema = model.metadata.get_input_schema()
                if schema is not None and schema.has_input_names():
                    self._fields = frozenset(schema.input_names())
                self._model = model
            return self._model

    def _input(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        given = {k: body[k] for k in PARAMS if k in body}
        if path == "/completions":
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise UpstreamError(400, "prompt: must be a string", retryable=False)
            return {"prompt": prompt, **given}
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise UpstreamError(400, "messages: must be a non-empty list", retryable=False)
        return {"messages": messages, **given}

    async def _predict(self, path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        model_input = self._input(path, body)
        try:
            model = await asyncio.to_thread(self._load)
            if self._fields is not None:
                model_input = {k: v for k, v in model_input.items() if k in self._fields}
        except Exception as exc:  # a missing model, alias or flavor: not retried
            log.warning("route %s: cannot load %s: %s", self.spec.name, self.spec.model, exc)
            raise UpstreamError(
                None,
                f"the MLflow model {self.spec.model} could not be loaded ({type(exc).__name__})",
                retryable=False,
            ) from None
        try:
            output = await asyncio.wait_for(
                asyncio.to_thread(model.predict, model_input), timeout=self.spec.timeout_s
            )
        except TimeoutError:
            raise UpstreamError(None, "the MLflow model timed out", retryable=True) from None
        except Exception as exc:  # the model's own failure: its kind, not its text
            raise UpstreamError(
                500, f"the MLflow model failed ({type(exc).__name__})", retryable=False
            ) from None
        try:
            text, usage = text_of(output)
        except TypeError as exc:
            raise UpstreamError(
                500,
                f"the MLflow model returned no text ({exc}); return a string, a list of "
                "strings or a chat completion dict",
                retryable=False,
            ) from None
        if usage is None:  # the gateway's own count, as for an upstream that reports none
            kind = "completions" if path == "/completions" else "chat"
            prompt, completion = input_tokens(kind, body), count_tokens(text)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return text, usage

    async def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call the model; answer in OpenAI's shape, with the model's usage or the count."""
        text, usage = await self._predict(path, body)
        created, model = int(time.time()), self.spec.model
        answer: dict[str, Any]
        if path == "/completions":
            answer = {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}],
            }
        else:
            answer = {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            }
        answer["usage"] = usage
        return answer

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """The answer as SSE payloads: one content chunk (the model is not incremental)."""
        text, usage = await self._predict(path, body)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            event = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.spec.model,
                "choices": [choice],
            }
            return orjson.dumps(event)

        yield chunk({"role": "assistant", "content": text}, None)
        yield chunk({}, "stop")
        event = {"id": ident, "object": "chat.completion.chunk", "created": created}
        yield orjson.dumps({**event, "model": self.spec.model, "choices": [], "usage": usage})
        yield b"[DONE]"

    async def aclose(self) -> None:
        self._model = None
