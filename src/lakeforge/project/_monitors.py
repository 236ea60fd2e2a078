"""Monitors declared under ``monitors:`` in ``lakeforge.yaml`` (or ``monitor:`` on an endpoint).

```yaml
monitors:
  flights:
    table: silver.flights                 # schema.table (this target's catalog) or 3 parts
    profile: time_series                  # snapshot | time_series | inference
    timestamp_col: time_hour
    granularities: ["1 day", "1 month"]
    slicing_exprs: ["origin", "distance > 1000"]
    baseline_table: gold.flights_train
    drift: {dep_delay: {method: wasserstein, threshold: 0.1}}
    custom_metrics:
      - {name: late_share, type: aggregate, definition: "avg(CAST(arr_delay > 15 AS DOUBLE))"}
endpoints:
  flight_delay:
    ...
    inference_table: {table: serving.flight_delay_requests}
    monitor: {problem_type: regression, prediction_col: prediction,
              labels: {table: silver.delays, join_on: [request_id], label_col: arr_delay}}
```

Cross-field rules are checked when the file loads: an inference monitor needs a problem
type and a prediction column, granularities come from Databricks' list, and so on.
Columns are checked against the table when a monitor refreshes.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lakeforge.project._base import Strict
from lakeforge.project._jobs import CronSchedule
from lakeforge.project._monitor_alerts import GRANULARITIES, AlertRule, matched

ProfileType = Literal["snapshot", "time_series", "inference"]
ProblemType = Literal["classification", "regression"]
#: Drift methods a column may be given (Evidently's names, plus the distances computed anyway).
DRIFT_METHODS = (
    "ks",
    "chisquare",
    "z",
    "wasserstein",
    "jensenshannon",
    "psi",
    "tvd",
    "linf",
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MONITOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class DriftOverride(Strict):
    """A column's drift method and threshold instead of Evidently's defaults."""

    method: str | None = None
    threshold: float | None = Field(default=None, gt=0)

    @field_validator("method")
    @classmethod
    def _method(cls, value: str | None) -> str | None:
        if value is not None and value not in DRIFT_METHODS:
            raise ValueError(
                f"unknown drift method {value!r} (allowed: {', '.join(DRIFT_METHODS)})"
            )
        return value


class CustomMetric(Strict):
    """A metric written as DuckDB SQL, one extra double column in the output tables.

    ``aggregate``: an aggregate expression over a window's rows (``{{input_column}}`` is
    replaced by each of ``input_columns``; ``:table`` alone gives one table-level value).
    ``derived``: an expression over aggregate metrics, by name.
    ``drift``: an expression comparing ``{{current_df}}.<metric>`` with ``{{base_df}}.<metric>``.
    """

    name: str
    type: Literal["aggregate", "derived", "drift"]
    definition: str
    input_columns: list[str] = Field(default_factory=lambda: [":table"])

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return matched(_IDENT, value, f"custom metric name {value!r}: use letters, digits and '_'")

    @model_validator(mode="after")
    def _placeholders(self) -> CustomMetric:
        has_column = "{{input_column}}" in self.definition
        per_column = self.input_columns != [":table"]
        if self.type == "drift":
            missing = [p for p in ("{{current_df}}", "{{base_df}}") if p not in self.definition]
            if missing:
                raise ValueError(
                    f"drift metric {self.name!r}: the definition must use {' and '.join(missing)}"
                    " (e.g. '{{current_df}}.my_avg - {{base_df}}.my_avg')"
                )
        if has_column and not per_column:
            raise ValueError(
                f"custom metric {self.name!r} uses {{{{input_column}}}} but names no "
                "input_columns (give the columns it applies to)"
            )
        if ":table" in self.input_columns and per_column:
            raise ValueError(
                f"custom metric {self.name!r}: input_columns is either [':table'] or columns"
            )
        return self


class LabelsSpec(Strict):
    """A table of late-arriving labels, joined to the monitored rows on ``join_on``."""

    table: str
    join_on: list[str] = Field(
        default_factory=lambda: ["request_id"],
        min_length=1,
        description="Columns both tables have: request_id (serving logs) or keys.",
    )
    label_col: str | None = Field(
        default=None, description="The label column in the labels table; default: the monitor's."
    )


class _MonitorFields(Strict):
    """Everything a monitor declares but its name, table and profile type."""

    timestamp_col: str | None = None
    granularities: list[str] = Field(default_factory=list)
    problem_type: ProblemType | None = None
    prediction_col: str | None = None
    probability_col: str | None = None
    label_col: str | None = None
    model_version_col: str | None = None
    slicing_exprs: list[str] = Field(default_factory=list)
    max_slices: int = Field(
        default=100, ge=1, description="At most this many values per slicing column."
    )
    baseline_table: str | None = None
    columns: list[str] | None = Field(
        default=None, description="The columns profiled; default: all but the special ones."
    )
    drift: dict[str, DriftOverride] = Field(default_factory=dict)
    dataset_drift_share: float = Field(default=0.5, gt=0, le=1)
    drift_min_count: int = Field(
        default=30,
        ge=1,
        description="A column with fewer values than this in a window gets its drift "
        "statistics but no verdict (drift_detected null): a tiny window drifts on everything.",
    )
    custom_metrics: list[CustomMetric] = Field(default_factory=list)
    labels: LabelsSpec | None = None
    output_schema: str | None = Field(
        default=None, description="Where the metric tables go; default: the table's schema."
    )
    alerts: list[AlertRule] = Field(default_factory=list)
    schedule: CronSchedule | None = None

    @field_validator("granularities")
    @classmethod
    def _granularities(cls, value: list[str]) -> list[str]:
        for item in value:
            if item not in GRANULARITIES:
                raise ValueError(
                    f"granularity {item!r} is not allowed (allowed: {', '.join(GRANULARITIES)})"
                )
        if len(set(value)) != len(value):
            raise ValueError(f"granularities repeat a value: {value}")
        return value

    @field_validator("slicing_exprs")
    @classmethod
    def _slices(cls, value: list[str]) -> list[str]:
        for expr in value:
            if not expr.strip():
                raise ValueError("a slicing expression is empty")
        return value

    @field_validator("custom_metrics")
    @classmethod
    def _metric_names(cls, value: list[CustomMetric]) -> list[CustomMetric]:
        names = [m.name for m in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"custom metric names repeat: {', '.join(twice)}")
        return value

    def _check(self, profile: ProfileType) -> None:
        """The rules that depend on the profile type."""
        if profile == "snapshot":
            if self.granularities:
                raise ValueError(
                    "a snapshot monitor has one window over the whole table: drop "
                    "granularities, or use profile time_series"
                )
        elif profile == "time_series" and self.timestamp_col is None:
            raise ValueError("a time_series monitor needs timestamp_col")
        if profile == "inference":
            if self.problem_type is None:
                raise ValueError(
                    "an inference monitor needs problem_type (classification|regression)"
                )
            if self.prediction_col is None:
                raise ValueError("an inference monitor needs prediction_col")
        else:
            given = [
                f
                for f in (
                    "problem_type",
                    "prediction_col",
                    "probability_col",
                    "label_col",
                    "labels",
                )
                if getattr(self, f) is not None
            ]
            if given:
                raise ValueError(
                    f"{', '.join(given)}: only an inference monitor has model columns "
                    f"(this one is {profile})"
                )
        if self.probability_col is not None and self.problem_type != "classification":
            raise ValueError("probability_col is for classification monitors only")
        if self.labels is not None and self.labels.label_col is None and self.label_col is None:
            raise ValueError("labels: name the label column (labels.label_col or label_col)")
        names = {m.name for m in self.custom_metrics}
        for metric in self.custom_metrics:
            if metric.type == "drift":
                used = set(re.findall(r"\{\{(?:current|base)_df\}\}\.(\w+)", metric.definition))
                unknown = sorted(used - names)
                if unknown:
                    raise ValueError(
                        f"drift metric {metric.name!r} compares unknown metric(s) "
                        f"{', '.join(unknown)} (custom metrics: {', '.join(sorted(names))})"
                    )


class MonitorSpec(_MonitorFields):
    """A monitor of one table: its profile type, windows, slices, baseline and alerts."""

    name: str = Field(default="", description="Set from the key under monitors:.")
    table: str
    profile: ProfileType = "snapshot"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not _MONITOR_NAME.fullmatch(value):
            raise ValueError(
                f"monitor name {value!r} is not valid: use lowercase letters, digits and '_', "
                "starting with a letter"
            )
        return value

    @model_validator(mode="after")
    def _rules(self) -> MonitorSpec:
        if self.profile == "inference" and self.timestamp_col is None:
            self.timestamp_col = "timestamp"
        if self.profile != "snapshot" and not self.granularities:
            self.granularities = ["1 day"]
        self._check(self.profile)
        return self

    @property
    def granularity_list(self) -> list[str]:
        """The window sizes refreshed: ``['snapshot']`` for a snapshot monitor."""
        return ["snapshot"] if self.profile == "snapshot" else list(self.granularities)


class EndpointMonitorSpec(_MonitorFields):
    """``monitor:`` on an endpoint: an inference monitor of its inference table."""

    name: str | None = Field(default=None, description="Default: the endpoint's name.")

    def to_monitor(self, endpoint: str, table: str) -> MonitorSpec:
        """The full monitor spec, on the endpoint's inference table."""
        fields = self.model_dump(exclude={"name"}, exclude_unset=True)
        return MonitorSpec.model_validate(
            {**fields, "name": self.name or endpoint, "table": table, "profile": "inference"}
        )

    @model_validator(mode="after")
    def _rules(self) -> EndpointMonitorSpec:
        self._check("inference")
        return self
