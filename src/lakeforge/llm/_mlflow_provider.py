"""``provider: mlflow``: a local model packaged with MLflow, answering as an upstream would.

The route's ``model`` is ``NAME@ALIAS`` or ``NAME/VERSION`` in the target's registry. The
pyfunc is loaded once per worker (on the first request, in a thread) and each call runs
in a thread, so the event loop keeps serving meanwhile. The answer's ``model`` is the
version that answered (``catalog.schema.name/3``), so the log's ``response`` says it too.

An alias route follows its alias without a restart, as served model endpoints do
(:mod:`lakeforge.serving._watch`): once loaded, a thread per route reads the alias's
``alias.moved`` events in the target's outbox every ``EVENT_INTERVAL_S`` (moves made
through Lakeforge) and the registry every ``POLL_INTERVAL_S`` (moves made directly in
MLflow). A new version is loaded in that thread while the old one keeps answering, then
swapped in by one reference assignment: requests in flight finish on the version they
started with. A version that fails to load is logged (once) and leaves the old one
serving; it is tried again at the next event or poll. ``NAME/VERSION`` never reloads.

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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from lakeforge.events import ALIAS_MOVED, Event, Outbox
from lakeforge.lakehouse import TableName
from lakeforge.llm._cost import count_tokens, input_tokens
from lakeforge.llm._providers import UpstreamError
from lakeforge.project import LLMModelSpec
from lakeforge.state import StateStore

if TYPE_CHECKING:
    from lakeforge.project import Target

log = logging.getLogger("lakeforge.llm")
PARAMS = ("max_tokens", "temperature", "top_p", "stop", "n")
EVENT_INTERVAL_S = 0.5  # how often the outbox is read, as the serving Watcher does
POLL_INTERVAL_S = 5.0  # how often the registry is read (its default for model endpoints)
T = TypeVar("T")
# One load at a time in a process: first requests and alias watches alike (use_target
# sets MLflow's process-wide URIs while a model loads).
_LOADING = threading.Lock()


def parse_model(model: str, catalog: str) -> tuple[str, str, str]:
    """A route's ``model`` as (``catalog.schema.name``, ``"@"`` or ``"/"``, alias or
    version); a ``schema.name`` gets the target's ``catalog``, as everywhere in the registry."""
    name, mark, ref = model.partition("@") if "@" in model else model.rpartition("/")
    qualified = TableName.parse(name, default_catalog=catalog, kind="model")
    return str(qualified), mark, ref


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


@dataclass(frozen=True)
class Loaded:
    """One loaded version of a route's model: a request uses one from start to end."""

    model: Any
    name: str  # ``catalog.schema.name/version``: the answer's ``model``
    fields: frozenset[str] | None  # the signature's inputs, if it has one


class MlflowProvider:
    """A registered pyfunc, loaded once per worker, called in a thread; an alias route
    keeps the version its alias points at (see the module docstring)."""

    def __init__(self, spec: LLMModelSpec, target: Target | None) -> None:
        if target is None:
            raise ValueError(
                f"route {spec.name!r} (provider mlflow) needs the target whose registry "
                "holds its model: GatewayEndpoint(..., target=ws.target)"
            )
        self.spec = spec
        self._target = target
        self._name, mark, self._ref = parse_model(spec.model, target.catalog)
        self._follows = mark == "@"  # an alias route; a version never changes
        self._current: Loaded | None = None
        self._failed: str | None = None  # the last failure to load, logged once
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"MlflowProvider(route={self.spec.name!r}, model={self.spec.model!r})"

    @property
    def serving(self) -> str | None:
        """The version answering now (``catalog.schema.name/3``; None before the first
        load): the gateway's response cache keys by it, so no swap answers from the old
        version's entries."""
        current = self._current
        return None if current is None else current.name

    def _wanted(self) -> str:
        """The version the route names now (its alias read from the registry)."""
        if not self._follows:
            return self._ref
        from lakeforge.tracking import client_for

        found = client_for(self._target).get_model_version_by_alias(self._name, self._ref)
        return str(found.version)

    def _load_version(self, version: str) -> Loaded:
        import mlflow

        from lakeforge.tracking import use_target

        name = f"{self._name}/{version}"
        with use_target(self._target):
            model = mlflow.pyfunc.load_model(f"models:/{name}")
        schema = model.metadata.get_input_schema()
        fields = None
        if schema is not None and schema.has_input_names():
            fields = frozenset(schema.input_names())
        return Loaded(model, name, fields)

    def _load(self) -> Loaded:
        """The loaded version; the first call loads it and starts the alias watch."""
        with _LOADING:  # concurrent first requests load the model once
            if self._current is None:
                self._current = self._load_version(self._wanted())
                if self._follows and self._watch is None:
                    self._watch = threading.Thread(
                        target=self._run, name=f"lakeforge-llm-watch-{self.spec.name}", daemon=True
                    )
                    self._watch.start()
            return self._current

    def _follow(self) -> None:
        """Load and swap in the version the alias points at now, if it moved; a version
        that fails to load leaves the current one serving (tried again on the next check)."""
        current = self._current
        version: str | None = None
        try:
            version = self._wanted()
            if current is not None and current.name == f"{self._name}/{version}":
                self._failed = None
                return
            with _LOADING:
                self._current = self._load_version(version)  # one assignment: atomic swap
        except Exception as exc:
            what = "read the alias" if version is None else f"load {self._name}/{version}"
            reason = f"{what}: {type(exc).__name__}: {exc}"
            if reason != self._failed:  # once per failure, not at every check
                log.error(
                    "route %s (%s): cannot %s (%s: %s); still serving %s",
                    self.spec.name,
                    self.spec.model,
                    what,
                    type(exc).__name__,
                    exc,
                    current.name if current is not None else "nothing",
                    exc_info=True,
                )
            self._failed = reason
            return
        self._failed = None
        previous = current.name if current is not None else "nothing"
        log.warning(
            "route %s (%s): %s -> %s", self.spec.name, self.spec.model, previous, self._current.name
        )

    def _run(self) -> None:
        """Follow the alias: its ``alias.moved`` events every ``EVENT_INTERVAL_S`` (moves
        made through Lakeforge), the registry every ``POLL_INTERVAL_S`` (moves made
        directly in MLflow, and retries of a version that failed to load)."""
        state = StateStore(self._target.state_store_url)
        outbox = Outbox(state)
        try:
            last = _safe(outbox.last_id, 0)
            self._follow()  # a move between the first load and ``last``
            next_poll = time.monotonic() + POLL_INTERVAL_S
            while not self._stop.wait(EVENT_INTERVAL_S):
                none: list[Event] = []
                moved = _safe(
                    partial(outbox.list, type=ALIAS_MOVED, subject=self._name, after_id=last), none
                )
                if moved:
                    last = moved[-1].id
                if moved or time.monotonic() >= next_poll:
                    self._follow()
                    next_poll = time.monotonic() + POLL_INTERVAL_S
        finally:
            state.dispose()

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

    async def _predict(self, path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """The model's text and usage, and the version that answered."""
        model_input = self._input(path, body)
        loaded = self._current  # the version this request keeps, even if a swap follows
        try:
            if loaded is None:
                loaded = await asyncio.to_thread(self._load)
        except Exception as exc:  # a missing model, alias or flavor: not retried
            log.warning("route %s: cannot load %s: %s", self.spec.name, self.spec.model, exc)
            raise UpstreamError(
                None,
                f"the MLflow model {self.spec.model} could not be loaded ({type(exc).__name__})",
                retryable=False,
            ) from None
        if loaded.fields is not None:
            model_input = {k: v for k, v in model_input.items() if k in loaded.fields}
        try:
            output = await asyncio.wait_for(
                asyncio.to_thread(loaded.model.predict, model_input), timeout=self.spec.timeout_s
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
        return text, usage, loaded.name

    async def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Call the model; answer in OpenAI's shape, with the model's usage or the count;
        the answer's ``model`` is the version that answered (``catalog.schema.name/3``)."""
        text, usage, model = await self._predict(path, body)
        created = int(time.time())
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
        text, usage, model = await self._predict(path, body)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            event = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }
            return orjson.dumps(event)

        yield chunk({"role": "assistant", "content": text}, None)
        yield chunk({}, "stop")
        event = {"id": ident, "object": "chat.completion.chunk", "created": created}
        yield orjson.dumps({**event, "model": model, "choices": [], "usage": usage})
        yield b"[DONE]"

    async def aclose(self) -> None:
        """Stop following the alias (a load under way ends on its own) and unload."""
        self._stop.set()
        if self._watch is not None:
            await asyncio.to_thread(self._watch.join, 30)
        self._current = None


def _safe(call: Callable[[], T], default: T) -> T:
    try:
        return call()
    except Exception:
        log.exception("reading the events outbox failed; retrying")
        return default
