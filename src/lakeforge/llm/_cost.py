"""Token counts and cost: the upstream's ``usage`` when it reports one, a simple count when not.

The fallback tokenizer counts words and punctuation marks (regex ``\\w+|[^\\w\\s]``): no
vocabulary to download, within about a third of a BPE tokenizer's count on English text.
"""

from __future__ import annotations

import re
from typing import Any

from lakeforge.project import PriceSpec

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Words and punctuation marks in ``text`` (the fallback tokenizer)."""
    return len(_TOKEN.findall(text))


def text_of(content: Any) -> str:
    """The text of a message's ``content``: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def input_tokens(kind: str, body: dict[str, Any]) -> int:
    """The fallback count of a request's input tokens (chat, completions or embeddings)."""
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return 0
        return sum(count_tokens(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
    given = body.get("prompt" if kind == "completions" else "input", "")
    if isinstance(given, str):
        return count_tokens(given)
    if isinstance(given, list):
        return sum(count_tokens(t) for t in given if isinstance(t, str))
    return 0


def output_text(kind: str, response: dict[str, Any]) -> str:
    """The generated text of a (non-streamed) response."""
    choices = response.get("choices")
    if kind == "embeddings" or not isinstance(choices, list):
        return ""
    if kind == "chat":
        parts = [text_of((c.get("message") or {}).get("content")) for c in choices]
    else:
        parts = [str(c.get("text") or "") for c in choices]
    return " ".join(parts)


def usage_of(kind: str, request: dict[str, Any], response: dict[str, Any]) -> tuple[int, int, bool]:
    """(input tokens, output tokens, counted): from ``usage``, else the fallback count."""
    usage = response.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return int(usage["prompt_tokens"]), int(usage.get("completion_tokens") or 0), False
    return input_tokens(kind, request), count_tokens(output_text(kind, response)), True


def cost_of(price: PriceSpec | None, tokens_in: int, tokens_out: int) -> float | None:
    """The cost of a call by the price table (None when the route has no price)."""
    if price is None:
        return None
    return (tokens_in * price.input_per_1m + tokens_out * price.output_per_1m) / 1_000_000
