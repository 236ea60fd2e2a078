"""Three-part names of tables and registered models: ``catalog.schema.name``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lakeforge.errors import TableNameError

_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
NameKind = Literal["table", "model"]
_KINDS: dict[str, tuple[str, str]] = {
    "table": ("table", "dev.bronze.flights"),
    "model": ("model", "dev.ml.flight_delay"),
}


@dataclass(frozen=True, order=True)
class TableName:
    """A validated table name. Parts are case-insensitive and stored lowercase."""

    catalog: str
    schema: str
    table: str

    @classmethod
    def parse(
        cls, name: str, *, default_catalog: str | None = None, kind: NameKind = "table"
    ) -> TableName:
        """Parse ``catalog.schema.table`` (or ``schema.table`` with ``default_catalog``).

        ``kind`` words the errors: registered models share the three-part form.
        """
        noun, example = _KINDS[kind]
        if not isinstance(name, str):
            raise TableNameError(f"{kind} name must be a string, got {type(name).__name__}")
        parts = name.strip().split(".")
        if len(parts) == 2 and default_catalog is not None:
            parts = [default_catalog, *parts]
        if len(parts) != 3:
            two_part = f", or schema.{noun} in the current target" if default_catalog else ""
            raise TableNameError(
                f"{kind} name {name!r} must have three parts, catalog.schema.{noun}{two_part} "
                f"(e.g. {example})"
            )
        for label, part in zip(("catalog", "schema", noun), parts, strict=True):
            if not part:
                raise TableNameError(f"{kind} name {name!r} has an empty {label} part")
            if not _PART.fullmatch(part):
                raise TableNameError(
                    f"{kind} name {name!r}: {label} part {part!r} is not valid; use letters, "
                    "digits and '_', starting with a letter or '_'"
                )
        return cls(*(part.lower() for part in parts))

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    def sibling(self, table: str) -> TableName:
        """Another table in the same schema."""
        return TableName.parse(f"{self.catalog}.{self.schema}.{table}")
