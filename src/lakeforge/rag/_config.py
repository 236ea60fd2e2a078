"""What a RAG chain is: the index it retrieves from, the prompt it fills, the LLM it asks.

The configuration travels inside the logged model (MLflow's ``model_config``) with
names only: the index and the prompt are resolved in whichever target loads the chain,
and the API key is the *name* of an environment variable, read at call time.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lakeforge.errors import LakeforgeError
from lakeforge.vectors import QueryType

MAX_K = 100  # documents per question: a prompt holds no more
QUESTION = "question"
CONTEXT = "context"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
_T = TypeVar("_T", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLMConfig(_Strict):
    """An OpenAI-compatible chat endpoint: ``lakeforge serve``'s gateway or any provider."""

    base_url: str = Field(description="e.g. http://127.0.0.1:8080/v1 (chat/completions is added)")
    model: str = Field(min_length=1, description="the model, or the gateway endpoint's name")
    api_key_env: str | None = Field(
        default=None, description="the environment variable holding the key (never the key)"
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=60.0, gt=0, le=600)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _URL.fullmatch(value):
            raise ValueError(f"{value!r} is not an http(s) URL such as http://127.0.0.1:8080/v1")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            # never echo it: a value here that is not a name is most likely the key itself
            raise ValueError(
                "api_key_env must be the name of an environment variable (e.g. "
                "OPENAI_API_KEY), never the key itself"
            )
        return value


class ChainConfig(_Strict):
    """retrieve (index, k, filter, query type) -> prompt (``name@alias``) -> LLM."""

    index: str = Field(description="the vector index, schema.name (resolved in the serving target)")
    prompt: str = Field(description="a prompt reference: name@alias, name/3 or name")
    llm: LLMConfig
    k: int = Field(default=5, ge=1, le=MAX_K, description="documents retrieved per question")
    filter: str | None = Field(default=None, description="SQL predicate on metadata columns")
    query_type: QueryType = "vector"
    trace: bool = Field(default=True, description="record MLflow trace spans per question")

    @field_validator("index", "prompt")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} must be a name without spaces")
        return value

    def to_model_config(self) -> dict[str, Any]:
        """The JSON-able form logged as the model's ``model_config``."""
        return self.model_dump(mode="json")


def parse_config(value: Any, what: str = "chain configuration") -> ChainConfig:
    """A :class:`ChainConfig` from itself or a mapping, with errors naming each bad field."""
    if isinstance(value, ChainConfig):
        return value
    return _validated(ChainConfig, value, f"invalid {what}", "")


def parse_llm(value: LLMConfig | dict[str, Any]) -> LLMConfig:
    """An :class:`LLMConfig` from itself or a mapping (``base_url``, ``model``, ...)."""
    if isinstance(value, LLMConfig):
        return value
    return _validated(
        LLMConfig,
        value,
        "invalid LLM endpoint",
        "llm.",
        hint="llm={'base_url': 'http://127.0.0.1:8080/v1', 'model': 'chat'}",
    )


def _validated(
    model: type[_T], value: Any, message: str, prefix: str, *, hint: str | None = None
) -> _T:
    """``model`` validated from ``value``; a :class:`LakeforgeError` naming each bad field
    (``prefix`` before its path) otherwise."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        raise LakeforgeError(f"{message}: {problems}", hint=hint) from None
