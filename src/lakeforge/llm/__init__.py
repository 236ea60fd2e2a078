"""The LLM gateway: OpenAI-compatible endpoints over upstream providers, with retries,
fallbacks, circuit breakers, rate limits, routing, a response cache and cost accounting.

Names load on first use, so importing the package does not import httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

if TYPE_CHECKING:
    from lakeforge.llm._calls import GatewayResult, PromptSource
    from lakeforge.llm._cost import count_tokens
    from lakeforge.llm._gateway import GatewayEndpoint
    from lakeforge.llm._prompts import (  # L1: prompts
        CachedPromptSource,
        PromptInfo,
        PromptNotFoundError,
        PromptRef,
        Prompts,
        template_text,
    )
    from lakeforge.llm._providers import Embedder, read_secret, redact, register_embedder
    from lakeforge.llm._providers import _embedder as local_embedder
    from lakeforge.llm._stream import GatewayStream

__all__ = [
    "Embedder",
    "GatewayEndpoint",
    "GatewayResult",
    "GatewayStream",
    "PromptSource",
    "count_tokens",
    "local_embedder",
    "read_secret",
    "redact",
    "register_embedder",
    # L1: prompts
    "CachedPromptSource",
    "PromptInfo",
    "PromptNotFoundError",
    "PromptRef",
    "Prompts",
    "template_text",
]

__getattr__ = lazy_names(
    __name__,
    {
        "Embedder": "_providers",
        "GatewayEndpoint": "_gateway",
        "GatewayResult": "_calls",
        "GatewayStream": "_stream",
        "PromptSource": "_calls",
        "count_tokens": "_cost",
        "local_embedder": ("_providers", "_embedder"),
        "read_secret": "_providers",
        "redact": "_providers",
        "register_embedder": "_providers",
        # L1: prompts
        "CachedPromptSource": "_prompts",
        "PromptInfo": "_prompts",
        "PromptNotFoundError": "_prompts",
        "PromptRef": "_prompts",
        "Prompts": "_prompts",
        "template_text": "_prompts",
    },
)
