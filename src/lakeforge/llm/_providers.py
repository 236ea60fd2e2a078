"""Upstream providers: OpenAI-compatible HTTP APIs (aiohttp, one pooled session per route) and
local embedding models registered by name.

Credentials are read at call time from the environment or a file, sent in the
``Authorization`` header of each request only, and redacted from anything an upstream
answers before it travels further.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lakeforge.errors import LakeforgeError
from lakeforge.llm._cost import count_tokens
from lakeforge.project import LLMModelSpec, SecretRef

if TYPE_CHECKING:
    import aiohttp

Embedder = Callable[[list[str]], Sequence[Sequence[float]]]
"""Texts in, one vector per text out."""

_EMBEDDERS: dict[str, Callable[[], Embedder]] = {}
_LOADED: dict[str, Embedder] = {}
_BEARER = re.compile(r"(?i)bearer\s+\S+")


def register_embedder(name: str, factory: Callable[[], Embedder]) -> None:
    """Make a local embedding model available as ``{provider: local, model: NAME}``.

    ``factory`` is called once per process, on first use (loading a model is slow).
    """
    _EMBEDDERS[name] = factory
    _LOADED.pop(name, None)


_LOADING = threading.Lock()


def _embedder(name: str) -> Embedder:
    with _LOADING:  # concurrent first requests load the model once
        return _load_embedder(name)


def _load_embedder(name: str) -> Embedder:
    if name not in _LOADED:
        if name not in _EMBEDDERS:
            # the [llm] extra's models register themselves when their module loads
            with contextlib.suppress(ImportError):  # no [llm] extra: nothing registers
                importlib.import_module("lakeforge.llm._local_embeddings")
        factory = _EMBEDDERS.get(name)
        if factory is None:
            raise UpstreamError(
                None,
                f"no local embedding model {name!r} is registered "
                f"(registered: {', '.join(sorted(_EMBEDDERS)) or 'none'})",
                retryable=False,
            )
        _LOADED[name] = factory()
    return _LOADED[name]


class SecretError(LakeforgeError):
    """A credential that cannot be read (the message names where, never the value)."""


class UpstreamError(Exception):
    """A failed upstream call. ``status`` is None for connection errors and timeouts.

    Its message never holds a credential: it is built by the gateway or redacted.
    """

    def __init__(
        self,
        status: int | None,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retryable = retryable
        self.retry_after_s = retry_after_s

    @property
    def client_error(self) -> bool:
        """The request itself is wrong (400, 413, 422...): no retry, no fallback."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status
            not in (
                401,
                403,
                404,
                408,
                429,
            )
        )


def read_secret(ref: SecretRef) -> str:
    """The secret's value, read now (a rotated key is picked up on the next call)."""
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if not value:
            raise SecretError(f"the API key's environment variable {ref.env} is not set")
        return value
    assert ref.file is not None
    try:
        value = Path(ref.file).read_text().strip()
    except OSError as exc:
        raise SecretError(
            f"the API key's file {ref.file} cannot be read ({exc.strerror})"
        ) from None
    if not value:
        raise SecretError(f"the API key's file {ref.file} is empty")
    return value


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` nor any ``Bearer ...`` token in it."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _BEARER.sub("Bearer [redacted]", text)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _status_error(
    status: int, text: str, retry_after: str | None, secret: str | None
) -> UpstreamError:
    """An UpstreamError for an HTTP answer that is not 2xx (upstream text redacted)."""
    retryable = status == 429 or status >= 500
    try:
        detail = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = text[:500]
    message = f"upstream answered HTTP {status}: {redact(str(detail), secret)}"
    return UpstreamError(
        status, message, retryable=retryable, retry_after_s=_retry_after(retry_after)
    )


class OpenAIProvider:
    """An OpenAI-compatible API at ``base_url``, over one pooled aiohttp session.

    aiohttp rather than httpx: a third of httpx's CPU time per call (measured by
    ``bench/llm_gateway.py``), which is most of what the gateway adds to a request. The
    session is made on first use, in the event loop that serves (one per worker).
    """

    def __init__(self, spec: LLMModelSpec) -> None:
        self.spec = spec
        self._session: aiohttp.ClientSession | None = None
        self._proxy: Any = None  # the environment's proxy for the base URL, if any

    def __repr__(self) -> str:
        return f"OpenAIProvider(route={self.spec.name!r}, url={self.spec.url!r})"

    def _client(self) -> aiohttp.ClientSession:
        import aiohttp
        from aiohttp.helpers import get_env_proxy_for_url
        from yarl import URL

        if self._session is None or self._session.closed:
            timeout = self.spec.timeout_s  # as httpx's: to connect, and between two reads
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
                ),
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
                # trust_env would look up proxies and ~/.netrc in a thread on every call:
                # the proxy (HTTP(S)_PROXY, NO_PROXY) is looked up once here instead
            )
            with contextlib.suppress(LookupError):
                self._proxy = get_env_proxy_for_url(URL(self.spec.url))[0]
        return self._session

    def _post(self, path: str, body: dict[str, Any]) -> tuple[Any, str | None]:
        """The pending POST of ``body`` (orjson-encoded) and the secret it carries."""
        import orjson

        headers = {"content-type": "application/json"}
        secret = None
        if self.spec.api_key is not None:
            try:
                secret = read_secret(self.spec.api_key)
            except SecretError as exc:
                raise UpstreamError(None, exc.message, retryable=False) from None
            headers["authorization"] = f"Bearer {secret}"
        session = self._client()
        url = self.spec.url + path
        return session.post(
            url, data=orjson.dumps(body), headers=headers, proxy=self._proxy
        ), secret

    def _failed(self, exc: BaseException) -> UpstreamError:
        kind = "timed out" if isinstance(exc, TimeoutError) else "failed"
        return UpstreamError(
            None, f"connection to the upstream {kind} ({type(exc).__name__})", retryable=True
        )

    async def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` and return the JSON answer (UpstreamError otherwise)."""
        import aiohttp
        import orjson

        pending, secret = self._post(path, body)
        try:
            async with pending as answer:
                raw = await answer.read()
                status, retry_after = answer.status, answer.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc) from None
        if status >= 300:
            raise _status_error(status, raw.decode(errors="replace"), retry_after, secret)
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            raise UpstreamError(
                status, "upstream answered something that is not a JSON object", retryable=True
            )
        return payload

    async def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """POST a streamed request; yield each SSE ``data:`` payload (bytes, without ``data:``).

        Fails with UpstreamError before the first payload (the caller may fall back) or
        after it (it may not).
        """
        import aiohttp

        pending, secret = self._post(path, body)
        try:
            answer = await pending
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc) from None
        try:
            if answer.status >= 300:
                text = (await answer.read()).decode(errors="replace")
                raise _status_error(answer.status, text, answer.headers.get("retry-after"), secret)
            rest = b""
            async for chunk in answer.content.iter_any():  # lines of any length
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        yield line[5:].strip()
            if rest.startswith(b"data:"):
                yield rest[5:].strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(exc) from None
        finally:
            answer.release()  # back to the pool when read to the end, else closed

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class LocalEmbeddingsProvider:
    """A local embedding model registered by name (``register_embedder``), run in a thread."""

    def __init__(self, spec: LLMModelSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"LocalEmbeddingsProvider(route={self.spec.name!r}, model={self.spec.model!r})"

    async def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        given = body.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not texts:
            raise UpstreamError(
                400, "input must be a string or a non-empty list of strings", retryable=False
            )
        # the first call loads the model (seconds): off the event loop, as scoring is
        embed = await asyncio.to_thread(_embedder, self.spec.model)
        try:
            vectors = await asyncio.wait_for(
                asyncio.to_thread(embed, texts), timeout=self.spec.timeout_s
            )
        except TimeoutError:
            raise UpstreamError(
                None, "the local embedding model timed out", retryable=True
            ) from None
        except Exception as exc:  # the model's own failure: report its kind, not its text
            raise UpstreamError(
                500, f"the local embedding model failed ({type(exc).__name__})", retryable=False
            ) from None
        tokens = sum(count_tokens(t) for t in texts)
        return {
            "object": "list",
            "model": self.spec.model,
            "data": [
                {"object": "embedding", "index": i, "embedding": [float(x) for x in vector]}
                for i, vector in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def aclose(self) -> None:
        return None


class Provider(Protocol):
    """What the gateway calls on a route (chat routes also have ``stream(path, body)``, an
    async iterator of SSE payloads)."""

    spec: LLMModelSpec

    async def request(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...
