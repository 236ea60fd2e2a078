"""Search spaces for tuning, given as data in the shape of a YAML config and validated.

C: {type: float, low: 0.001, high: 10, log: true}
max_depth: {type: int, low: 2, high: 8}
kernel: {type: categorical, choices: [linear, rbf]}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from lakeforge.errors import LakeforgeError

if TYPE_CHECKING:
    import optuna


class SearchSpaceError(LakeforgeError):
    """A search space given as data that does not validate."""


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatParam(_Param):
    """A float in ``[low, high]``, optionally on a log scale or a grid of ``step``."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @field_validator("high")
    @classmethod
    def _above_low(cls, value: float, info: ValidationInfo) -> float:
        return _check_high(value, info)

    @field_validator("log")
    @classmethod
    def _positive_low(cls, value: bool, info: ValidationInfo) -> bool:
        low = info.data.get("low")
        if value and low is not None and low <= 0:
            raise ValueError(f"a log scale needs low > 0, got low={low}")
        return value

    @field_validator("step")
    @classmethod
    def _step(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None:
            if value <= 0:
                raise ValueError(f"must be > 0, got {value}")
            if info.data.get("log"):
                raise ValueError("cannot be combined with log: true")
        return value


class IntParam(_Param):
    """An integer in ``[low, high]``, every ``step``, optionally on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @field_validator("high")
    @classmethod
    def _above_low(cls, value: int, info: ValidationInfo) -> int:
        return _check_high(value, info)

    @field_validator("log")
    @classmethod
    def _positive_low(cls, value: bool, info: ValidationInfo) -> bool:
        low = info.data.get("low")
        if value and low is not None and low < 1:
            raise ValueError(f"a log scale needs low >= 1, got low={low}")
        return value

    @field_validator("step")
    @classmethod
    def _step(cls, value: int, info: ValidationInfo) -> int:
        if value < 1:
            raise ValueError(f"must be >= 1, got {value}")
        if value != 1 and info.data.get("log"):
            raise ValueError("cannot be combined with log: true")
        return value


class CategoricalParam(_Param):
    """One of ``choices`` (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    choices: list[None | bool | int | float | str] = Field(min_length=1)


def _check_high(value: Any, info: ValidationInfo) -> Any:
    low = info.data.get("low")
    if low is not None and value < low:
        raise ValueError(f"must be >= low ({low}), got {value}")
    return value


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SearchSpace(RootModel[dict[str, ParamSpec]]):
    """A search space as data: ``{name: {"type": "float"|"int"|"categorical", ...}}``.

    The same shape as a YAML config section, e.g.::

        C: {type: float, low: 0.001, high: 10, log: true}
        max_depth: {type: int, low: 2, high: 8}
        kernel: {type: categorical, choices: [linear, rbf]}
    """

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one value per parameter from ``trial``."""
        params: dict[str, Any] = {}
        for name, spec in self.root.items():
            if isinstance(spec, FloatParam):
                params[name] = trial.suggest_float(
                    name, spec.low, spec.high, log=spec.log, step=spec.step
                )
            elif isinstance(spec, IntParam):
                params[name] = trial.suggest_int(
                    name, spec.low, spec.high, log=spec.log, step=spec.step
                )
            else:
                params[name] = trial.suggest_categorical(name, spec.choices)
        return params


def parse_space(space: Mapping[str, Any]) -> SearchSpace:
    """Validate a search space given as data; errors name the parameter and the field."""
    if isinstance(space, SearchSpace):
        return space
    if not isinstance(space, Mapping):
        raise SearchSpaceError(
            f"search space must be a mapping of parameter name to spec (or a function of the "
            f"Optuna trial), got {type(space).__name__}"
        )
    if not space:
        raise SearchSpaceError("search space is empty: give at least one parameter")
    try:
        return SearchSpace.model_validate(dict(space))
    except ValidationError as exc:
        problems = [_describe(error) for error in exc.errors()]
        raise SearchSpaceError(
            "invalid search space: " + "; ".join(problems),
            hint="each parameter is {type: float|int, low: .., high: .., log: false} or "
            "{type: categorical, choices: [..]}",
        ) from None


def _describe(error: Any) -> str:
    loc = [str(part) for part in error["loc"]]
    if not loc:
        return str(error["msg"])
    where = f"parameter {loc[0]!r}"
    kind = error["type"]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"{where}: field 'type': must be one of 'float', 'int', 'categorical'" + (
            f", got {error['input'].get('type')!r}" if kind == "union_tag_invalid" else ""
        )
    if len(loc) < 3:  # the spec itself, e.g. not a mapping
        return f"{where}: {error['msg']}"
    name = ".".join(loc[2:])
    if kind == "extra_forbidden":
        return f"{where}: unknown field {name!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: field {name!r}: {message}"


# -- trials -----------------------------------------------------------------------------
