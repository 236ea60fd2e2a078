"""Alert rules of a monitor, and the SMTP server its email channel sends through.

```yaml
monitors:
  flights:
    ...
    alerts:
      - name: dep_delay_drift
        metric: drift_score          # a column of the drift (or profile) metrics table
        column_name: dep_delay       # default ':table'
        drift_type: BASELINE         # drift metrics only; default BASELINE
        comparator: ">="
        threshold: 0.1
        windows: 2 of last 3         # trigger when 2 of the last 3 windows breach
        channels: [log, events, email]
        email: [oncall@example.com]
        action: {job: retrain, parameters: {reason: drift}}
smtp: {host: smtp.example.com, port: 587, from: lakeforge@example.com, starttls: true,
       username: lakeforge, password_env: SMTP_PASSWORD}
```

Imports nothing from the database or the runtime, so the project config can use it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from lakeforge.project._base import Strict

Comparator = Literal[">", ">=", "<", "<=", "==", "!="]
Channel = Literal["log", "events", "email"]
MetricsTable = Literal["profile", "drift"]
DriftType = Literal["CONSECUTIVE", "BASELINE"]

#: Window sizes a time-series or inference monitor may use (Databricks' list).
GRANULARITIES = (
    "5 minutes",
    "30 minutes",
    "1 hour",
    "1 day",
    "1 week",
    "1 month",
    "1 year",
)
#: Window sizes of the metric tables, finest first.
WINDOW_SIZES = ("snapshot", *GRANULARITIES)
_RULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_WINDOWS = re.compile(r"^\s*(\d+)\s+of\s+(?:(?:the\s+)?last\s+)?(\d+)\s*$", re.IGNORECASE)
_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The metric columns of the output tables (the contract), in their order there; the
# monitoring package builds the tables from these, and a rule's metric tells its table.
#: Profile metrics of each column and of ``:table`` (``quantiles`` and ``frequent_items``
#: are lists, so no alert reads them).
COLUMN_METRICS = (
    "count",
    "num_nulls",
    "percent_null",
    "num_zeros",
    "percent_zeros",
    "distinct_count",
    "percent_distinct",
    "min",
    "max",
    "avg",
    "stddev",
    "median",
    "quantiles",
    "frequent_items",
    "avg_length",
)
#: Model quality of a classification monitor (``:table`` rows of inference monitors).
CLASSIFICATION_METRICS = (
    "accuracy_score",
    "precision",
    "recall",
    "f1_score",
    "roc_auc",
    "log_loss",
)
#: Model quality of a regression monitor.
REGRESSION_METRICS = (
    "mean_absolute_error",
    "root_mean_squared_error",
    "r2_score",
    "mean_absolute_percentage_error",
)
QUALITY_METRICS = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
#: Serving health of an inference monitor's windows, from its inference table.
HEALTH_METRICS = (
    "request_count",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
)
#: Drift statistics and distances of a column against the baseline or previous window.
DRIFT_STATISTICS = (
    "ks_statistic",
    "ks_pvalue",
    "chi_squared_statistic",
    "chi_squared_pvalue",
    "population_stability_index",
    "js_distance",
    "tv_distance",
    "l_infinity_distance",
    "wasserstein_distance",
)
DRIFT_DELTAS = ("count_delta", "avg_delta", "percent_null_delta")
#: The verdict: the chosen method's score against its threshold, and the dataset's share.
DRIFT_VERDICTS = (
    "drift_score",
    "drift_threshold",
    "drift_detected",
    "drift_share",
    "dataset_drift",
)
PROFILE_METRICS = frozenset([*COLUMN_METRICS, *QUALITY_METRICS, *HEALTH_METRICS]) - {
    "quantiles",
    "frequent_items",
}
DRIFT_METRICS = frozenset([*DRIFT_STATISTICS, *DRIFT_DELTAS, *DRIFT_VERDICTS])


def matched(pattern: re.Pattern[str], value: str, problem: str) -> str:
    """``value`` when ``pattern`` matches all of it; else a ValueError saying ``problem``."""
    if not pattern.fullmatch(value):
        raise ValueError(problem)
    return value


class AlertWindows(Strict):
    """``n`` of the last ``m`` windows must breach; written ``"2 of last 3"`` or ``2`` (2 of 2)."""

    n: int = Field(ge=1)
    m: int = Field(ge=1)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return {"n": value, "m": value}
        if isinstance(value, str):
            found = _WINDOWS.fullmatch(value)
            if not found:
                raise ValueError(
                    f"windows {value!r} is not 'N of last M' (e.g. '2 of last 3', '1 of 1')"
                )
            return {"n": int(found.group(1)), "m": int(found.group(2))}
        return value

    @model_validator(mode="after")
    def _check(self) -> AlertWindows:
        if self.n > self.m:
            raise ValueError(f"windows: {self.n} of the last {self.m} can never happen (N > M)")
        return self

    def __str__(self) -> str:
        return f"{self.n} of last {self.m}"


class AlertSlice(Strict):
    """A slice of the monitored data: the rows with ``slice_key = key, slice_value = value``."""

    key: str = Field(min_length=1)
    value: str


class AlertAction(Strict):
    """The job to run when the rule triggers, with parameters (usually a retraining job).

    The ``monitor.alert`` event carries it; the job fires through its ``monitor_alert``
    trigger and reads the parameters as ``{{trigger.event.payload.action.parameters.X}}``.
    """

    job: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class AlertRule(Strict):
    """One alert on a monitor's metrics: a metric of one column (or slice) against a
    threshold, over the last windows; notified on the ``channels`` when it triggers and
    when it resolves."""

    name: str
    metric: str = Field(min_length=1)
    table: MetricsTable | None = None
    """``profile`` or ``drift``; guessed from the metric when it is a standard one."""
    column_name: str = ":table"
    slice: AlertSlice | None = None
    drift_type: DriftType | None = None
    """Drift metrics only: compared with the baseline (default) or the previous window."""
    granularity: str | None = None
    """The windows to read when the metrics have several granularities (default: the finest)."""
    model_version: str | None = None
    """Inference monitors: one model version (default: any version breaching counts)."""
    comparator: Comparator
    threshold: float
    windows: AlertWindows = Field(default_factory=lambda: AlertWindows(n=1, m=1))
    channels: list[Channel] = Field(default_factory=lambda: list[Channel](["log", "events"]))
    email: list[str] = Field(default_factory=list)
    action: AlertAction | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return matched(
            _RULE_NAME,
            value,
            f"alert name {value!r} is not valid: use letters, digits, '_', '.' or '-', "
            "starting with a letter or '_' (at most 64 characters)",
        )

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, value: str | None) -> str | None:
        if value is not None and value not in WINDOW_SIZES:
            raise ValueError(
                f"granularity {value!r} is not allowed (allowed: {', '.join(WINDOW_SIZES)})"
            )
        return value

    @field_validator("email")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [address for address in value if not _EMAIL.fullmatch(address)]
        if bad:
            raise ValueError(f"email: {', '.join(map(repr, bad))} is not an email address")
        return value

    @model_validator(mode="after")
    def _check(self) -> AlertRule:
        where = f"alert {self.name!r}"
        if self.table is None:
            if self.metric in DRIFT_METRICS:
                self.table = "drift"
            elif self.metric in PROFILE_METRICS:
                self.table = "profile"
            else:
                raise ValueError(
                    f"{where}: metric {self.metric!r} is not a standard metric; say which "
                    "table holds it with table: profile or table: drift"
                )
        known = DRIFT_METRICS if self.table == "drift" else PROFILE_METRICS
        other = PROFILE_METRICS if self.table == "drift" else DRIFT_METRICS
        if self.metric in other and self.metric not in known:
            raise ValueError(
                f"{where}: metric {self.metric!r} is in the other metrics table, "
                f"not in {self.table}"
            )
        if self.table == "drift":
            self.drift_type = self.drift_type or "BASELINE"
        elif self.drift_type is not None:
            raise ValueError(f"{where}: drift_type applies to drift metrics only")
        if not self.channels:
            raise ValueError(f"{where}: channels is empty (allowed: log, events, email)")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"{where}: a channel is listed twice in {self.channels}")
        if "email" in self.channels:
            if not self.email:
                raise ValueError(f"{where}: the email channel needs recipients (email: [...])")
            if "events" not in self.channels:
                raise ValueError(
                    f"{where}: email is sent from the events outbox; list 'events' in channels too"
                )
        elif self.email:
            raise ValueError(f"{where}: email recipients are given but 'email' is not a channel")
        if self.action is not None and "events" not in self.channels:
            raise ValueError(
                f"{where}: the action runs through the monitor.alert event; "
                "list 'events' in channels"
            )
        return self


class SmtpConfig(Strict):
    """The SMTP server alert emails go through. The password is read from the environment
    variable ``password_env`` when sending, never written in ``lakeforge.yaml``."""

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(alias="from")
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        return matched(_EMAIL, value, f"smtp from {value!r} is not an email address")

    @model_validator(mode="after")
    def _check(self) -> SmtpConfig:
        if self.password_env is not None:
            if not _ENV_NAME.fullmatch(self.password_env):
                raise ValueError(
                    f"smtp password_env {self.password_env!r} is not an environment variable "
                    "name (the password itself never goes in lakeforge.yaml)"
                )
            if self.username is None:
                raise ValueError("smtp password_env is given without a username")
        return self
