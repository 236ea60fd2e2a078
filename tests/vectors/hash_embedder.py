"""A deterministic, instant embedding model for the crash tests (registered by name)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from lakeforge.llm import register_embedder

NAME = "test-hash-embedder"
SIZE = 16


def _embed(texts: list[str]) -> Sequence[Sequence[float]]:
    out = []
    for text in texts:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).normal(size=SIZE)
        out.append((vector / np.linalg.norm(vector)).tolist())
    return out


register_embedder(NAME, lambda: _embed)
