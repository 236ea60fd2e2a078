"""Embedding texts for an index: a local model of the ``[llm]`` extra, or an
OpenAI-compatible ``/embeddings`` endpoint (httpx), in batches.

An endpoint's API key is read from its :class:`~lakeforge.project.SecretRef` at call time,
sent only in the ``Authorization`` header, and never logged nor put in an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from lakeforge.llm import local_embedder, read_secret, redact
from lakeforge.project import EmbeddingSpec
from lakeforge.vectors._store import VectorIndexError

Progress = Callable[[int], None]
_Call = Callable[[list[str]], Sequence[Sequence[float]]]
_DIMENSIONS: dict[tuple[str, str | None], int] = {}


def embed(
    spec: EmbeddingSpec, texts: Sequence[str | None], *, progress: Progress | None = None
) -> np.ndarray:
    """One float32 row per text (a missing text embeds as the empty string)."""
    with _session(spec) as call:
        return _batches(spec, call, texts, progress)


def _batches(
    spec: EmbeddingSpec, call: _Call, texts: Sequence[str | None], progress: Progress | None
) -> np.ndarray:
    out: list[np.ndarray] = []
    for start in range(0, len(texts), spec.batch_size):
        batch = ["" if t is None else str(t) for t in texts[start : start + spec.batch_size]]
        vectors = np.asarray(call(batch), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            raise VectorIndexError(
                f"embedding model {spec.model!r} answered {vectors.shape[0] if vectors.ndim else 0}"
                f" vector(s) for {len(batch)} text(s)"
            )
        out.append(vectors)
        if progress is not None:
            progress(len(batch))
    if not out:
        return np.zeros((0, dimensions(spec)), dtype=np.float32)
    return np.concatenate(out)


def dimensions(spec: EmbeddingSpec) -> int:
    """The model's vector size: declared, or asked of the model once per process."""
    if spec.dimensions is not None:
        return spec.dimensions
    key = (spec.model, spec.endpoint)
    if key not in _DIMENSIONS:
        with _session(spec) as call:
            _DIMENSIONS[key] = len(call(["dimensions"])[0])
    return _DIMENSIONS[key]


@contextmanager
def _session(spec: EmbeddingSpec) -> Iterator[_Call]:
    """A function embedding one batch: the local model, or one HTTP client's calls."""
    if spec.endpoint is None:
        try:
            model = local_embedder(spec.model)
        except Exception as exc:  # UpstreamError (unknown model) or a missing extra
            raise VectorIndexError(f"embedding model {spec.model!r}: {exc}") from None
        yield model
        return
    import httpx

    with httpx.Client(timeout=httpx.Timeout(spec.timeout_s)) as client:
        yield lambda texts: _remote(spec, client, texts)


def _remote(spec: EmbeddingSpec, client: Any, texts: list[str]) -> Sequence[Sequence[float]]:
    import httpx

    assert spec.endpoint is not None
    url = spec.endpoint.rstrip("/") + "/embeddings"
    secret = None if spec.api_key is None else _secret(spec)
    headers = {} if secret is None else {"authorization": f"Bearer {secret}"}
    try:
        answer = client.post(url, json={"model": spec.model, "input": texts}, headers=headers)
    except httpx.HTTPError as exc:
        raise VectorIndexError(f"embedding endpoint {url} failed ({type(exc).__name__})") from None
    if answer.status_code >= 300:
        raise VectorIndexError(
            f"embedding endpoint {url} answered HTTP {answer.status_code}: "
            f"{redact(answer.text[:300], secret)}"
        )
    try:
        data = sorted(answer.json()["data"], key=lambda item: item["index"])
        return [item["embedding"] for item in data]
    except (ValueError, KeyError, TypeError):
        raise VectorIndexError(
            f"embedding endpoint {url} answered something that is not an embeddings list"
        ) from None


def _secret(spec: EmbeddingSpec) -> str:
    assert spec.api_key is not None
    try:
        return read_secret(spec.api_key)
    except Exception as exc:  # SecretError: its message names where, never the value
        raise VectorIndexError(f"embedding endpoint {spec.endpoint}: {exc}") from None
