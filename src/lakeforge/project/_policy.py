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
```
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["disabled", "dry_run", "enabled"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Bounds(_Strict):
    """Absolute bounds on a metric."""

    min: float | None = None
    max: float | None = None


class Relative(_Strict):
    """Bounds relative to the champion (or the baseline), in the metric's better direction."""

    min_improvement: float | None = None
    max_regression: float | None = None


class Checks(_Strict):
    """Compliance checks; each is off unless set. Unknown check names are refused."""

    required_tags: list[str] = Field(default_factory=list)
    description: bool = False
    signature: bool = False
    lineage: bool = False
    metrics: dict[str, Bounds] = Field(default_factory=dict)
    max_size_mb: float | None = None
    max_latency_p95_ms: float | None = None
    forbidden_columns: list[str] = Field(default_factory=list)


class ChampionComparison(_Strict):
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


class ValidationPolicy(_Strict):
    mode: Mode = "enabled"
    checks: Checks = Field(default_factory=Checks)
    champion: ChampionComparison | None = None


class DeploymentPolicy(_Strict):
    """How versions reach ``champion`` in a target."""

    approval: Literal["auto", "manual"] = "auto"
    approvers: list[str] = Field(default_factory=list)
    separation_of_duties: bool = False
    validation: ValidationPolicy = Field(default_factory=ValidationPolicy)
