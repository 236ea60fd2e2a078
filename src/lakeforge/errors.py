"""Errors Lakeforge raises on purpose.

Every error says what failed, where, and (when there is one) what to do next. The CLI
prints these without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LakeforgeError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\nhint: {hint}")


class ConfigError(LakeforgeError):
    """The project file is missing, malformed, or names something that does not exist."""


class UnknownTargetError(ConfigError):
    """A target name that the project file does not declare."""


class TableNameError(LakeforgeError):
    """A table name that is not a valid ``catalog.schema.table``."""


class TableNotFoundError(LakeforgeError):
    """A table that does not exist in the lakehouse."""


class TableExistsError(LakeforgeError):
    """A create of a table that already exists."""


class PermissionDeniedError(LakeforgeError):
    """A target touched another target's tables in a way the project does not allow."""


class SchemaMismatchError(LakeforgeError):
    """Data whose columns or types do not match the table it is written to."""


class ExpectationError(LakeforgeError):
    """A data-quality expectation that is invalid, or an ``expect_or_fail`` rule that failed."""


class SqlError(LakeforgeError):
    """A SQL statement that does not parse, does not bind, or is not allowed."""


class IngestError(LakeforgeError):
    """An ingestion that cannot start (bad source, bad options)."""
