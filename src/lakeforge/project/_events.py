"""Event types, and the glob patterns consumers and webhooks select them with."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from typing import Final

from lakeforge.errors import LakeforgeError

MODEL_VERSION_CREATED: Final = "model_version.created"
MODEL_VERSION_DELETED: Final = "model_version.deleted"
VALIDATION_PASSED: Final = "validation.passed"
VALIDATION_FAILED: Final = "validation.failed"
APPROVAL_REQUESTED: Final = "approval.requested"
APPROVAL_DECIDED: Final = "approval.decided"
ALIAS_MOVED: Final = "alias.moved"
JOB_FINISHED: Final = "job.finished"
MONITOR_ALERT: Final = "monitor.alert"
EVENT_TYPES: Final = (
    MODEL_VERSION_CREATED,
    MODEL_VERSION_DELETED,
    VALIDATION_PASSED,
    VALIDATION_FAILED,
    APPROVAL_REQUESTED,
    APPROVAL_DECIDED,
    ALIAS_MOVED,
    JOB_FINISHED,
    MONITOR_ALERT,
)


class EventError(LakeforgeError):
    """An event that cannot be recorded (unknown type, payload that is not JSON)."""


def check_type(type: str) -> str:
    """``type`` if it is a known event type, else an :class:`EventError` listing them."""
    if type not in EVENT_TYPES:
        raise EventError(f"unknown event type {type!r} (allowed: {', '.join(EVENT_TYPES)})")
    return type


def check_patterns(patterns: Iterable[str]) -> list[str]:
    """Glob patterns over event types (``approval.*``); each must match a known type."""
    checked = list(patterns)
    for pattern in checked:
        if not fnmatch.filter(EVENT_TYPES, pattern):
            raise EventError(
                f"event pattern {pattern!r} matches no event type "
                f"(allowed: {', '.join(EVENT_TYPES)}; globs like 'approval.*' work)"
            )
    return checked


def matches(type: str, patterns: Sequence[str] | None) -> bool:
    """Whether ``type`` matches one of the glob ``patterns`` (``None``: everything)."""
    return patterns is None or any(fnmatch.fnmatchcase(type, p) for p in patterns)
