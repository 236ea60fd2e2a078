"""The one base of every spec in ``lakeforge.yaml``: unknown fields are refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A spec that refuses fields it does not declare (a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid")
