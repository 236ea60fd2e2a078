"""LLM endpoints declared under ``llm_endpoints:`` in ``lakeforge.yaml`` (the gateway).

```yaml
llm_endpoints:
  assistant:
    type: chat                      # chat | completions | embeddings
    prompt: prompts.support@production   # optional: the system message template
    models:                         # tried in order on failure; `weight` splits the first tier
      - {name: small, provider: openai, model: gpt-4o-mini, base_url: http://127.0.0.1:8001/v1,
         api_key: {env: OPENAI_API_KEY}, weight: 90, timeout_s: 20, max_retries: 2,
         price: {input_per_1m: 0.15, output_per_1m: 0.60}}
      - {name: big, provider: openai, model: gpt-4o, api_key: {file: /run/secrets/openai},
         weight: 10}
    routing: {escalate_to: big, when: {max_input_tokens: 2000}}
    fallback: true
    circuit_breaker: {failures: 5, reset_s: 30}
    rate_limits: {requests_per_minute: 600, tokens_per_minute: 200000,
                  per_user: {requests_per_minute: 60}}
    cache: {ttl_s: 300, max_entries: 1000}
    log_table: serving.llm_requests  # default serving.<endpoint>_llm_requests
    logging: {flush_interval_s: 2, flush_rows: 5000}   # spool -> log tables
    traces: true                    # one MLflow trace per request (background)
    auth: {token_sha256: [...]}
```

A route with ``provider: mlflow`` calls a pyfunc registered in the target's registry
(``model: NAME@ALIAS`` or ``NAME/VERSION``), loaded once per worker: see
:mod:`lakeforge.llm._mlflow_provider` for what it is given and may return.

The models with a ``weight`` form the first tier: each request picks one of them at
random in proportion to the weights (a model with no weight is a fallback only); when
none has a weight, the first model answers. On failure the others follow in order.
Credentials are referenced by name (``env`` or ``file``) and read at call time.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lakeforge.project._base import Strict
from lakeforge.project._endpoints import AuthSpec

_ROUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_PROMPT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,255}@[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGISTERED = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,255}(@[A-Za-z0-9][A-Za-z0-9_.-]{0,62}|/[0-9]+)$"
)
_TABLE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")


def _check_prompt(value: str | None, where: str) -> str | None:
    if value is not None and not _PROMPT.fullmatch(value):
        raise ValueError(
            f"{where}: {value!r} is not a prompt reference: use NAME@ALIAS or NAME@VERSION "
            "(e.g. prompts.support@production or support@3)"
        )
    return value


class SecretRef(Strict):
    """Where a credential lives: an environment variable or a file, never its value."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _by_name(cls, value: object) -> object:
        if not isinstance(value, dict):
            # never echo the value: a string here is most likely the key itself
            raise ValueError(
                "api_key must reference the secret by name, {env: VARIABLE} or "
                "{file: /path/to/secret}, never hold the key itself"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("api_key: give exactly one of env or file")
        if self.env is not None and not _ENV_NAME.fullmatch(self.env):
            raise ValueError(f"api_key.env: {self.env!r} is not an environment variable name")
        return self

    def describe(self) -> str:
        """Where the secret is read from, for messages (never the secret)."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"


class PriceSpec(Strict):
    """Prices in the provider's currency per million tokens."""

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(default=0.0, ge=0)


class LLMModelSpec(Strict):
    """One upstream model (a route) of an LLM endpoint."""

    name: str = Field(description="The route's name: unique in the endpoint, logged as `route`.")
    provider: Literal["openai", "local", "mlflow"] = Field(
        description="openai: any OpenAI-compatible base URL (OpenAI, vLLM, llama.cpp, "
        "Ollama); local: an embedding model of the [llm] extra (embeddings only); mlflow: "
        "a pyfunc registered in the target's registry, NAME@ALIAS or NAME/VERSION (chat "
        "and completions)."
    )
    model: str = Field(min_length=1, description="The model name the provider knows.")
    base_url: str | None = Field(
        default=None, description="openai only; default https://api.openai.com/v1."
    )
    api_key: SecretRef | None = None
    weight: float | None = Field(default=None, ge=0, description="Share of the first tier.")
    prompt: str | None = Field(
        default=None, description="Overrides the endpoint's prompt on this route (split prompts)."
    )
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles each retry, with jitter."
    )
    price: PriceSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> LLMModelSpec:
        if not _ROUTE.fullmatch(self.name):
            raise ValueError(f"model name {self.name!r}: use letters, digits, _ . - (max 63)")
        _check_prompt(self.prompt, f"models[{self.name}].prompt")
        if self.base_url is not None:
            if self.provider != "openai":
                raise ValueError(f"models[{self.name}]: base_url is for provider openai only")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(
                    f"models[{self.name}].base_url: {self.base_url!r} is not an http(s) URL"
                )
        if self.provider != "openai" and self.api_key is not None:
            raise ValueError(f"models[{self.name}]: a {self.provider} model takes no api_key")
        if self.provider == "mlflow" and not _REGISTERED.fullmatch(self.model):
            raise ValueError(
                f"models[{self.name}].model: {self.model!r} is not a registered model: use "
                "NAME@ALIAS or NAME/VERSION (e.g. llm.support@champion or llm.support/3)"
            )
        return self

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return (self.base_url or "https://api.openai.com/v1").rstrip("/")


class RoutingWhen(Strict):
    """When the routing rule escalates (a request may also ask: ``lakeforge.escalate``)."""

    max_input_tokens: int | None = Field(
        default=None, ge=0, description="Escalate when the input has more tokens than this."
    )


class RoutingSpec(Strict):
    """Cheap model first: escalate to a named model when the rule says so."""

    escalate_to: str
    when: RoutingWhen = Field(default_factory=RoutingWhen)


class CircuitBreakerSpec(Strict):
    """Per route: open after ``failures`` consecutive failures, half-open after ``reset_s``."""

    failures: int = Field(default=5, ge=1)
    reset_s: float = Field(default=30.0, gt=0)


class UserLimits(Strict):
    """Limits that apply to each user separately."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)


class RateLimitSpec(Strict):
    """Limits per endpoint (all users together) and per user; over them: 429."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    per_user: UserLimits | None = None
    store: str | None = Field(
        default=None,
        description="redis://host:port/db to share limits across machines; default: a "
        "shared-memory file in the serving spool, shared by the workers of one machine.",
    )

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://")):
            raise ValueError(f"rate_limits.store: {value!r} is not a redis:// URL")
        return value


class CacheSpec(Strict):
    """A response cache for non-streamed requests."""

    ttl_s: float = Field(gt=0)
    max_entries: int = Field(default=1000, ge=1)


class LLMLogSpec(Strict):
    """How often a worker moves its spooled log rows into the log tables."""

    flush_interval_s: float = Field(default=2.0, gt=0, description="Seconds between flushes.")
    flush_rows: int = Field(default=5000, ge=1, description="Flush early at this many rows.")


class LLMEndpointSpec(Strict):
    """One LLM endpoint: an OpenAI-compatible route over ordered upstream models."""

    type: Literal["chat", "completions", "embeddings"] = "chat"
    prompt: str | None = Field(
        default=None,
        description="A registered prompt, NAME@ALIAS: its template is the system "
        "message (chat only).",
    )
    models: list[LLMModelSpec] = Field(min_length=1)
    routing: RoutingSpec | None = None
    fallback: bool = True
    circuit_breaker: CircuitBreakerSpec = Field(default_factory=CircuitBreakerSpec)
    rate_limits: RateLimitSpec | None = None
    cache: CacheSpec | None = None
    log_table: str | None = Field(
        default=None, description="schema.table; default serving.<endpoint>_llm_requests."
    )
    auth: AuthSpec | None = None
    max_payload_mb: float = Field(default=16.0, gt=0)
    logging: LLMLogSpec = Field(default_factory=LLMLogSpec)
    traces: bool = Field(
        default=False,
        description="Record each request as an MLflow trace in the target's tracking "
        "store (experiment llm-gateway/<endpoint>), written in the background.",
    )

    @field_validator("log_table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not _TABLE.fullmatch(value):
            raise ValueError(f"log_table: {value!r} is not schema.table (lowercase)")
        return value

    @model_validator(mode="after")
    def _check(self) -> LLMEndpointSpec:
        _check_prompt(self.prompt, "prompt")
        names = [m.name for m in self.models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"models: names must be unique (repeated: {repeated})")
        prompted = self.prompt is not None or any(m.prompt for m in self.models)
        if prompted and self.type != "chat":
            raise ValueError(
                f"prompt: a prompt is the system message of chat only (type: {self.type})"
            )
        for model in self.models:
            if model.provider == "local" and self.type != "embeddings":
                raise ValueError(
                    f"models[{model.name}]: provider local serves embeddings only "
                    f"(type: {self.type})"
                )
            if model.provider == "mlflow" and self.type == "embeddings":
                raise ValueError(
                    f"models[{model.name}]: provider mlflow serves chat and completions, "
                    "not embeddings"
                )
        weights = [m.weight for m in self.models if m.weight is not None]
        if weights and sum(weights) <= 0:
            raise ValueError("models: the weights of the first tier add up to 0")
        if self.routing is not None and self.routing.escalate_to not in names:
            raise ValueError(
                f"routing.escalate_to: {self.routing.escalate_to!r} is not one of the "
                f"models (models: {', '.join(names)})"
            )
        return self

    def table(self, endpoint: str) -> str:
        """The payload log table (schema.table) of the endpoint named ``endpoint``."""
        return self.log_table or f"serving.{endpoint}_llm_requests"
