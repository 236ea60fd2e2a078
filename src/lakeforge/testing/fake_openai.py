"""A local server speaking OpenAI's protocol, for tests and benchmarks of LLM clients.

Routes (under ``/v1``): ``POST /chat/completions`` (JSON, or SSE when ``stream: true``,
with a final usage chunk when ``stream_options.include_usage``), ``POST /completions``,
``POST /embeddings`` (deterministic 8-dimensional vectors), ``GET /models``.
Answers are deterministic: a chat echoes the last message's content, a completion its
prompt; token counts are whitespace-separated words.

It can be told to be slow, to fail with status N for the next K calls (429 with a
``Retry-After``), to leave ``usage`` out, to break a stream after K chunks, or to require
an API key (a wrong key is echoed back in the error, as some providers do, so tests can
check that a client never relays it)::

    from lakeforge.testing.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:                  # a thread; FakeOpenAI(subprocess=True) too
        fake.fail(429, times=2, retry_after=0.1)
        ...  # point a client at fake.url ("http://127.0.0.1:PORT/v1")
        assert fake.calls["/v1/chat/completions"] == 3

It binds 127.0.0.1 on a free port and stops by itself after ``ttl_s`` (and, in a
subprocess, when its parent exits). ``python -m lakeforge.testing.fake_openai`` runs one
in the foreground and prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import socket
import subprocess as _subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_CONTROL = "/_fake"
_MAX_KEPT = 1000


@dataclass
class _Settings:
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    reply: str | None = None
    usage: bool = True
    break_stream_after: int | None = None
    api_key: str | None = None


@dataclass
class _Failure:
    status: int
    times: int
    retry_after: float | None
    message: str
    echo_auth: bool
    path: str | None


@dataclass
class _State:
    settings: _Settings = field(default_factory=_Settings)
    failures: list[_Failure] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def _words(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [b / 255.0 - 0.5 for b in digest[:8]]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]


class FakeOpenAIApp:
    """The ASGI application (one per server); its state is changed through ``/_fake``."""

    def __init__(self, settings: _Settings | None = None) -> None:
        self.state = _State(settings=settings or _Settings())
        self._ids = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path: str = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if path.startswith(_CONTROL):
            await self._control(path, body, send)
            return
        await self._api(scope["method"], path, headers, body, send)

    # -- control ---------------------------------------------------------------------

    async def _control(self, path: str, body: bytes, send: Send) -> None:
        state = self.state
        payload = json.loads(body) if body else {}
        if path == f"{_CONTROL}/configure":
            for key, value in payload.items():
                setattr(state.settings, key, value)
        elif path == f"{_CONTROL}/fail":
            state.failures.append(_Failure(**payload))
        elif path == f"{_CONTROL}/reset":
            self.state = _State(settings=_Settings(api_key=state.settings.api_key))
        elif path != f"{_CONTROL}/state":
            await _json(send, 404, {"error": f"unknown control {path}"})
            return
        await _json(
            send,
            200,
            {
                "calls": dict(self.state.calls),
                "requests": self.state.requests,
                "headers": self.state.headers,
                "settings": asdict(self.state.settings),
            },
        )

    # -- the OpenAI API ----------------------------------------------------------------

    async def _api(
        self, method: str, path: str, headers: dict[str, str], body: bytes, send: Send
    ) -> None:
        state = self.state
        state.calls[path] += 1
        try:
            request = json.loads(body) if body else {}
        except ValueError:
            await _json(send, 400, _error("body is not JSON", "invalid_request_error"))
            return
        if len(state.requests) < _MAX_KEPT:
            state.requests.append(request)
            state.headers.append(headers)
        settings = state.settings
        if settings.delay_s:
            await asyncio.sleep(settings.delay_s)
        auth = headers.get("authorization", "")
        if settings.api_key is not None and auth != f"Bearer {settings.api_key}":
            shown = auth.removeprefix("Bearer ")
            message = f"Incorrect API key provided: {shown}"
            await _json(send, 401, _error(message, "invalid_request_error", "invalid_api_key"))
            return
        failure = self._next_failure(path)
        if failure is not None:
            message = failure.message + (f" (authorization: {auth})" if failure.echo_auth else "")
            extra = []
            if failure.retry_after is not None:
                extra.append((b"retry-after", f"{failure.retry_after:g}".encode()))
            await _json(send, failure.status, _error(message, "fake_failure"), extra)
            return
        handler = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
            ("POST", "/v1/embeddings"): self._embeddings,
        }.get((method, path))
        if method == "GET" and path == "/v1/models":
            data = [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]
            await _json(send, 200, {"object": "list", "data": data})
        elif handler is None:
            await _json(send, 404, _error(f"no route {method} {path}", "invalid_request_error"))
        else:
            await handler(request, send)

    def _next_failure(self, path: str) -> _Failure | None:
        for failure in self.state.failures:
            if failure.times > 0 and failure.path in (None, path):
                failure.times -= 1
                return failure
        return None

    def _next_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def _usage(self, prompt: int, completion: int) -> dict[str, int] | None:
        if not self.state.settings.usage:
            return None
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def _chat(self, request: dict[str, Any], send: Send) -> None:
        messages = request.get("messages") or []
        if not isinstance(messages, list) or not messages:
            await _json(send, 400, _error("messages is required", "invalid_request_error"))
            return
        model = str(request.get("model", "fake-model"))
        settings = self.state.settings
        reply = settings.reply
        if reply is None:
            reply = _text_of(messages[-1].get("content") if isinstance(messages[-1], dict) else "")
        prompt = sum(_words(_text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        usage = self._usage(prompt, _words(reply))
        ident, created = self._next_id("chatcmpl"), int(time.time())
        if not request.get("stream"):
            answer: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
            }
            if usage is not None:
                answer["usage"] = usage
            await _json(send, 200, answer)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }

        pieces = [w + " " for w in reply.split(" ")] if reply else []
        if pieces:
            pieces[-1] = pieces[-1][:-1]
        events = [chunk({"role": "assistant", "content": ""}, None)]
        events += [chunk({"content": piece}, None) for piece in pieces]
        events.append(chunk({}, "stop"))
        include = (request.get("stream_options") or {}).get("include_usage")
        if include and usage is not None:
            events.append({**chunk({}, None), "choices": [], "usage": usage})
        for number, event in enumerate(events):
            if settings.break_stream_after is not None and number >= settings.break_stream_after:
                raise ConnectionAbortedError("fake: stream broken on purpose")
            if settings.chunk_delay_s and number:
                await asyncio.sleep(settings.chunk_delay_s)
            data = b"data: " + json.dumps(event).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

    async def _completions(self, request: dict[str, Any], send: Send) -> None:
        prompt = request.get("prompt", "")
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        reply = self.state.settings.reply if self.state.settings.reply is not None else text
        answer: dict[str, Any] = {
            "id": self._next_id("cmpl"),
            "object": "text_completion",
            "created": int(time.time()),
            "model": str(request.get("model", "fake-model")),
            "choices": [{"index": 0, "text": reply, "finish_reason": "stop", "logprobs": None}],
        }
        usage = self._usage(_words(text), _words(reply))
        if usage is not None:
            answer["usage"] = usage
        await _json(send, 200, answer)

    async def _embeddings(self, request: dict[str, Any], send: Send) -> None:
        given = request.get("input", "")
        texts = [given] if isinstance(given, str) else [str(t) for t in given]
        answer: dict[str, Any] = {
            "object": "list",
            "model": str(request.get("model", "fake-model")),
            "data": [
                {"object": "embedding", "index": i, "embedding": _vector(t)}
                for i, t in enumerate(texts)
            ],
        }
        tokens = sum(_words(t) for t in texts)
        if self.state.settings.usage:
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        await _json(send, 200, answer)


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


async def _json(
    send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _server(app: FakeOpenAIApp) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    server.config.load()
    return server


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


class FakeOpenAI:
    """A fake OpenAI-compatible server on 127.0.0.1, in a thread or a subprocess."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        reply: str | None = None,
        usage: bool = True,
        api_key: str | None = None,
        subprocess: bool = False,
        ttl_s: float = 600.0,
    ) -> None:
        self._settings = _Settings(delay_s=delay_s, reply=reply, usage=usage, api_key=api_key)
        self._subprocess = subprocess
        self._ttl_s = ttl_s
        self._process: _subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._uvicorn: Any = None
        self.port = 0

    def __repr__(self) -> str:
        return f"FakeOpenAI(url={self.url!r})"

    @property
    def url(self) -> str:
        """The base URL clients use: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAI:
        """Start serving; returns once the server answers."""
        if self._subprocess:
            self._start_process()
        else:
            self._start_thread()
        deadline = time.monotonic() + 30
        while True:
            try:
                self.state()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the fake OpenAI server did not start within 30 s") from None
                time.sleep(0.02)

    def _start_thread(self) -> None:
        sock = _listen()
        self.port = sock.getsockname()[1]
        server = self._uvicorn = _server(FakeOpenAIApp(self._settings))

        def serve() -> None:
            timer = threading.Timer(self._ttl_s, lambda: setattr(server, "should_exit", True))
            timer.daemon = True
            timer.start()
            try:
                server.run(sockets=[sock])
            finally:
                timer.cancel()
                sock.close()

        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()

    def _start_process(self) -> None:
        # run as a script: the child imports uvicorn only, not lakeforge
        args = [sys.executable, "-I", __file__, "--ttl", str(self._ttl_s)]
        args += ["--parent", str(os.getpid()), "--settings", json.dumps(asdict(self._settings))]
        self._process = _subprocess.Popen(args, stdout=_subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the fake OpenAI server did not start (said {line!r})")
        self.port = int(line.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._uvicorn = self._thread = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except _subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control -------------------------------------------------------------------------

    def _control(self, action: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{_CONTROL}/{action}", data=data, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result

    def configure(
        self,
        *,
        delay_s: float | None = None,
        chunk_delay_s: float | None = None,
        reply: str | None = None,
        usage: bool | None = None,
        break_stream_after: int | None = None,
        api_key: str | None = None,
    ) -> None:
        """Change how it answers from now on (arguments left out stay as they are)."""
        given = {
            "delay_s": delay_s,
            "chunk_delay_s": chunk_delay_s,
            "reply": reply,
            "usage": usage,
            "break_stream_after": break_stream_after,
            "api_key": api_key,
        }
        self._control("configure", {k: v for k, v in given.items() if v is not None})

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: float | None = None,
        message: str = "fake upstream failure",
        echo_auth: bool = False,
        path: str | None = None,
    ) -> None:
        """Answer the next ``times`` API calls (to ``path``, or any) with ``status``.

        ``retry_after`` adds a ``Retry-After`` header (seconds); ``echo_auth`` puts the
        request's ``Authorization`` header into the error message.
        """
        self._control(
            "fail",
            {
                "status": status,
                "times": times,
                "retry_after": retry_after,
                "message": message,
                "echo_auth": echo_auth,
                "path": path,
            },
        )

    def reset(self) -> None:
        """Forget calls, requests, failures and settings (but keep a required API key)."""
        self._control("reset", {})

    def state(self) -> dict[str, Any]:
        """``calls`` per path, the ``requests`` bodies and ``headers`` seen, ``settings``."""
        return self._control("state")

    @property
    def calls(self) -> Counter[str]:
        """API calls per path (``/v1/chat/completions``...), failed ones included."""
        return Counter(self.state()["calls"])

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The JSON bodies received, oldest first (the first 1000)."""
        found: list[dict[str, Any]] = self.state()["requests"]
        return found


def _watch_parent(parent: int, server: Any) -> None:
    while not server.should_exit:
        if os.getppid() != parent:
            server.should_exit = True
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    """Run a fake OpenAI server in the foreground; print its URL on the first line."""
    parser = argparse.ArgumentParser(prog="python -m lakeforge.testing.fake_openai")
    parser.add_argument("--ttl", type=float, default=600.0, help="stop after this many seconds")
    parser.add_argument("--parent", type=int, default=None, help="stop when this process exits")
    parser.add_argument("--settings", default="{}", help="initial settings as JSON")
    args = parser.parse_args(argv)
    sock = _listen()
    server = _server(FakeOpenAIApp(_Settings(**json.loads(args.settings))))
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)
    timer = threading.Timer(args.ttl, lambda: setattr(server, "should_exit", True))
    timer.daemon = True
    timer.start()
    if args.parent is not None:
        threading.Thread(target=_watch_parent, args=(args.parent, server), daemon=True).start()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
