"""Serving endpoints declared under ``endpoints:`` in ``lakeforge.yaml``.

```yaml
endpoints:
  flight_delay:
    served_entities:
      - model: ml.flight_delay        # schema.model (this target's catalog) or catalog.schema.model
        alias: champion               # or version: 3
        traffic: 90
      - {model: ml.flight_delay, alias: challenger, traffic: 10}
    shadow: {model: ml.flight_delay_v2, alias: challenger}   # gets a copy; never answers
    inference_table: {table: serving.flight_delay_requests, sample: 1.0}
    monitor: {problem_type: regression, prediction_col: prediction}   # see _monitors
    auth: {token_sha256: [9f86d08...]}  # `lakeforge endpoints token` makes one
    timeout_s: 10
    max_payload_mb: 16
```
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from lakeforge.project._base import Strict
from lakeforge.project._monitors import EndpointMonitorSpec

_ENTITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class EntitySpec(Strict):
    """A registered model at an alias or a version."""

    model: str
    alias: str | None = None
    version: int | None = Field(default=None, ge=1)
    name: str | None = Field(default=None, description="Served entity name; default model-alias.")

    @model_validator(mode="after")
    def _one_ref(self) -> EntitySpec:
        if (self.alias is None) == (self.version is None):
            raise ValueError(f"{self.model}: give exactly one of alias or version")
        if self.name is not None and not _ENTITY.fullmatch(self.name):
            raise ValueError(f"served entity name {self.name!r}: use letters, digits, _ . -")
        return self

    @property
    def entity_name(self) -> str:
        ref = self.alias if self.alias is not None else str(self.version)
        return self.name or f"{self.model.rsplit('.', 1)[-1]}-{ref}"


class ServedEntitySpec(EntitySpec):
    """An entity that answers a share of the endpoint's traffic."""

    traffic: float = Field(default=100.0, ge=0, le=100)


class InferenceTableSpec(Strict):
    """Where requests are logged: a Delta table, and the fraction of requests to log."""

    table: str
    sample: float = Field(default=1.0, ge=0, le=1)
    flush_interval_s: float = Field(default=2.0, gt=0)
    flush_rows: int = Field(default=5000, ge=1)


class AuthSpec(Strict):
    """Bearer tokens, stored as their SHA-256 hex digests."""

    token_sha256: list[str] = Field(min_length=1)

    @field_validator("token_sha256")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            if not _SHA256.fullmatch(digest):
                raise ValueError(
                    f"{digest[:12]!r}... is not a SHA-256 hex digest "
                    "(store hashes, never tokens: `lakeforge endpoints token`)"
                )
        return value


class EndpointSpec(Strict):
    """One serving endpoint: entities with traffic shares, an optional shadow and log."""

    served_entities: list[ServedEntitySpec] = Field(min_length=1)
    shadow: EntitySpec | None = None
    inference_table: InferenceTableSpec | None = None
    monitor: EndpointMonitorSpec | None = Field(
        default=None, description="An inference monitor of the inference table."
    )
    auth: AuthSpec | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_payload_mb: float = Field(default=16.0, gt=0)
    max_batch_rows: int = Field(
        default=512,
        ge=1,
        description="Requests queued together are scored in one call of up to this many rows.",
    )
    poll_interval_s: float = Field(
        default=5.0, gt=0, description="How often the registry is polled for alias moves."
    )

    @model_validator(mode="after")
    def _traffic(self) -> EndpointSpec:
        total = sum(entity.traffic for entity in self.served_entities)
        if abs(total - 100.0) > 1e-6:
            shares = ", ".join(f"{e.entity_name}={e.traffic:g}" for e in self.served_entities)
            raise ValueError(f"traffic shares must add up to 100 (got {total:g}: {shares})")
        names = [e.entity_name for e in self.served_entities]
        if self.shadow is not None:
            names.append(self.shadow.entity_name)
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"served entity names must be unique (repeated: {duplicates})")
        if self.monitor is not None and self.inference_table is None:
            raise ValueError(
                "monitor: the endpoint has no inference_table to monitor (declare "
                "inference_table: {table: schema.table})"
            )
        return self
