"""Deployment policy of a target, as declared in ``lakeforge.yaml``.

```yaml
targets:
  prod:
    deployment:
      approval: manual                 # auto | manual
      approvers: [alice, group:ml-leads]
      separation_of_duties: true       # a requester cannot approve their own request
      validation:
        mode: enabled                  # disabled | dry_run | enabled
        checks:
          required_tags: [team]
          description: true
          signature: true              # a signature and an input example
          lineage: true                # code commit and data versions
          metrics: {test_roc_auc: {min: 0.8}}
          max_size_mb: 200
          max_latency_p95_ms: 50
          forbidden_columns: [ssn, email]
        champion:
          sql: SELECT * FROM prod.gold.holdout
          label: late
          model_type: classifier
          metrics: {roc_auc: {min_improvement: 0.0, max_regression: 0.01}}
          baseline: heuristic           # no champion yet: majority class / mean predictor
      rollback: manual                 # auto | manual (default: as approval)
      models:                          # per registered model, first matching pattern wins;
        "prod.ml.delay_*":             # a field left out takes the value above
          validation:
            champion: {table: prod.gold.delay_holdout, label: arr_delay,
                       model_type: regressor, metrics: {rmse: {max_regression: 1.0}}}
```

On a target with ``approval: manual`` (gated), ``champion`` and ``previous`` move only
through a decided approval request (or an audited ``emergency`` move); a manual policy
must name its approvers.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from lakeforge.project._base import Strict

Mode = Literal["disabled", "dry_run", "enabled"]
Approval = Literal["auto", "manual"]


class Bounds(Strict):
    """Absolute bounds on a metric."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return _require_mapping(value, "min", "max")


class Relative(Strict):
    """Bounds relative to the champion (or the baseline), in the metric's better direction."""

    min_improvement: float | None = None
    max_regression: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return _require_mapping(value, "min_improvement", "max_regression")


def _require_mapping(value: Any, *keys: str) -> Any:
    """A bound written as a bare number gets an error naming the keys it needs."""
    if isinstance(value, dict | BaseModel):
        return value
    raise ValueError(
        f"a bound is a mapping with the key(s) {' and/or '.join(keys)}, "
        f"e.g. {{{keys[0]}: {value!r}}}"
    )


class Checks(Strict):
    """Compliance checks; each is off unless set. Unknown check names are refused."""

    required_tags: list[str] = Field(default_factory=list)
    description: bool = False
    signature: bool = False
    lineage: bool = False
    metrics: dict[str, Bounds] = Field(default_factory=dict)
    max_size_mb: float | None = None
    max_latency_p95_ms: float | None = None
    forbidden_columns: list[str] = Field(default_factory=list)


class ChampionComparison(Strict):
    """Score challenger and champion on the same held-out data; thresholds per metric."""

    table: str | None = None
    sql: str | None = None
    label: str
    model_type: Literal["classifier", "regressor"]
    metrics: dict[str, Relative] = Field(default_factory=dict)
    baseline: Literal["heuristic", "none"] = "none"
    """``heuristic``: with no champion, compare with the majority class / mean predictor."""
    absolute: dict[str, Bounds] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> ChampionComparison:
        if (self.table is None) == (self.sql is None):
            raise ValueError("champion: give exactly one of table or sql for the held-out data")
        return self


class ValidationPolicy(Strict):
    mode: Mode = "enabled"
    checks: Checks = Field(default_factory=Checks)
    champion: ChampionComparison | None = None


class PolicyRule(Strict):
    """How versions reach ``champion``: approval, approvers, rollback and validation."""

    approval: Approval = "auto"
    approvers: list[str] = Field(default_factory=list)
    separation_of_duties: bool = False
    rollback: Approval | None = None
    """How a rollback is approved on a gated target (default: as ``approval``)."""
    validation: ValidationPolicy = Field(default_factory=ValidationPolicy)

    @property
    def gated(self) -> bool:
        """Whether ``champion`` moves only through a decided approval request."""
        return self.approval == "manual"

    @property
    def rollback_approval(self) -> Approval:
        return self.rollback or self.approval


class EffectivePolicy(PolicyRule):
    """The policy one model gets: a matching ``models`` rule over the target default."""

    source: str
    """``default``, or the ``models`` pattern that matched."""

    def describe(self, target: str) -> str:
        """Where the policy comes from, as a path in ``lakeforge.yaml``."""
        if self.source == "default":
            return f"targets.{target}.deployment (the target default: no models rule matches)"
        return f"targets.{target}.deployment.models[{self.source!r}]"


class DeploymentPolicy(PolicyRule):
    """The target's default policy, and rules per registered model (first match wins)."""

    models: dict[str, PolicyRule] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _patterns(cls, value: dict[str, PolicyRule]) -> dict[str, PolicyRule]:
        for pattern in value:
            if len(pattern.split(".")) != 3:
                raise ValueError(
                    f"pattern {pattern!r} must match a full model name catalog.schema.model "
                    "(globs allowed, e.g. prod.ml.delay_*)"
                )
        return value

    def for_model(self, model: str) -> EffectivePolicy:
        """The policy of ``model`` (``catalog.schema.model``): the first matching rule."""
        return self._resolve(next((p for p in self.models if fnmatchcase(model, p)), None))

    def effective(self) -> list[EffectivePolicy]:
        """The default and every rule, as the models they match get them."""
        return [self._resolve(None), *(self._resolve(p) for p in self.models)]

    def _resolve(self, pattern: str | None) -> EffectivePolicy:
        """Rule ``pattern`` over the default: fields it leaves out (also inside
        ``validation``) come from the default."""
        if pattern is None:
            return EffectivePolicy(source="default", **_fields(self, self, PolicyRule))
        rule = self.models[pattern]
        values = _fields(rule, self, PolicyRule)
        if "validation" in rule.model_fields_set:
            values["validation"] = ValidationPolicy(
                **_fields(rule.validation, self.validation, ValidationPolicy)
            )
        return EffectivePolicy(source=pattern, **values)


def _fields(own: BaseModel, default: BaseModel, model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s fields from ``own`` where it sets them, else from ``default``."""
    return {
        name: getattr(own if name in own.model_fields_set else default, name)
        for name in model.model_fields
    }
