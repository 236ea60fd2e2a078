"""How a training set gets its features: table lookups and Python feature functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

#: A feature function: pandas Series (one per parameter) in, a Series (or array) out.
FeatureFn = Callable[..., Any]


@dataclass(frozen=True)
class _Registered:
    fn: FeatureFn
    return_type: pa.DataType | None


_FUNCTIONS: dict[str, _Registered] = {}


def register_function(
    name: str, *, return_type: pa.DataType | None = None
) -> Callable[[FeatureFn], FeatureFn]:
    """Register a vectorised Python feature function under ``name`` (a decorator).

    The function receives one pandas Series per parameter and returns a Series or array
    of the same length. ``return_type`` fixes the output's Arrow type (default: inferred
    from the first batch).
    """
    if not name or not isinstance(name, str):
        raise ValueError("a feature function needs a non-empty name")

    def decorate(fn: FeatureFn) -> FeatureFn:
        _FUNCTIONS[name] = _Registered(fn, return_type)
        return fn

    return decorate


def get_function(name: str) -> tuple[FeatureFn, pa.DataType | None]:
    """The registered function ``name`` and its return type."""
    try:
        entry = _FUNCTIONS[name]
    except KeyError:
        known = ", ".join(sorted(_FUNCTIONS)) or "none"
        raise KeyError(
            f"feature function {name!r} is not registered (registered: {known})"
        ) from None
    return entry.fn, entry.return_type


def _names(value: str | Sequence[str], what: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be a column name or a non-empty list of column names")
    if len(set(names)) != len(names):
        raise ValueError(f"{what} repeats a column: {list(names)}")
    return names


@dataclass(frozen=True)
class FeatureLookup:
    """Join features of ``table_name`` to a training set on ``lookup_key``.

    ``lookup_key`` names columns of the training data matched, in order, to the feature
    table's primary keys (without its timestamp key). With ``timestamp_lookup_key`` the
    join is point-in-time: the feature row with the latest timestamp at or before the
    row's timestamp, and with ``lookback_window`` no older than that timestamp minus the
    window. ``feature_names`` picks features (default: all), ``rename_outputs`` maps
    feature names to output column names, ``default_values`` (by feature name) replace a
    null result.
    """

    table_name: str
    lookup_key: str | Sequence[str]
    timestamp_lookup_key: str | None = None
    lookback_window: timedelta | None = None
    feature_names: Sequence[str] | None = None
    rename_outputs: Mapping[str, str] | None = None
    default_values: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.table_name, str) or not self.table_name:
            raise ValueError("FeatureLookup.table_name must be a table name")
        object.__setattr__(self, "lookup_key", _names(self.lookup_key, "lookup_key"))
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", _names(self.feature_names, "feature_names"))
        if self.lookback_window is not None:
            if self.timestamp_lookup_key is None:
                raise ValueError("lookback_window needs a timestamp_lookup_key")
            if not isinstance(self.lookback_window, timedelta) or self.lookback_window < timedelta(
                0
            ):
                raise ValueError("lookback_window must be a non-negative timedelta")
        object.__setattr__(self, "rename_outputs", dict(self.rename_outputs or {}))
        object.__setattr__(self, "default_values", dict(self.default_values or {}))

    @property
    def lookup_keys(self) -> tuple[str, ...]:
        """``lookup_key`` as a tuple."""
        return tuple(self.lookup_key)

    def output_name(self, feature: str) -> str:
        """The training-set column name of ``feature``."""
        return (self.rename_outputs or {}).get(feature, feature)


@dataclass(frozen=True)
class FeatureFunction:
    """Compute ``output_name`` with the registered function ``udf_name``.

    ``input_bindings`` maps the function's parameters to columns of the training set
    (label data columns or looked-up feature outputs).
    """

    udf_name: str
    input_bindings: Mapping[str, str] = field(default_factory=dict)
    output_name: str = ""

    def __post_init__(self) -> None:
        if not self.udf_name:
            raise ValueError("FeatureFunction.udf_name must name a registered function")
        object.__setattr__(self, "input_bindings", dict(self.input_bindings))
        if not self.output_name:
            object.__setattr__(self, "output_name", self.udf_name)

    def apply(self, frame: pd.DataFrame) -> Any:
        """The function's output over the columns of ``frame``."""
        fn, _ = get_function(self.udf_name)
        return fn(**{param: frame[column] for param, column in self.input_bindings.items()})

    def compute(self, frame: pd.DataFrame, type: pa.DataType | None = None) -> pa.Array:
        """:meth:`apply` as Arrow, of ``type`` (default: the registered return type)."""
        return pa.array(
            self.apply(frame), type=type or get_function(self.udf_name)[1], from_pandas=True
        )


def apply_functions(frame: pd.DataFrame, functions: Sequence[FeatureFunction]) -> pd.DataFrame:
    """Add each function's output column to ``frame`` (in place, in order); return it.

    Scoring uses this for on-demand features, with the same conversions as training.
    """
    for fn in functions:
        frame[fn.output_name] = fn.compute(frame).to_pandas().set_axis(frame.index)
    return frame
