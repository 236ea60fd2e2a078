"""``webhooks:`` in ``lakeforge.yaml``: where events are POSTed, and which ones.

Imports nothing from the database or the project, so the project config can use it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lakeforge.events._types import EventError, check_patterns

_WEBHOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class WebhookConfig(BaseModel):
    """One HTTP endpoint that receives events as signed JSON POSTs.

    ``secret`` signs every delivery (``X-Lakeforge-Signature``); use ``${ENV_VAR}`` in
    ``lakeforge.yaml`` rather than writing it down. ``events`` are glob patterns over
    event types (``["approval.*", "alias.moved"]``); ``["*"]`` is every event.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    url: str
    secret: str | None = Field(default=None, repr=False)
    events: list[str] = Field(default_factory=lambda: ["*"])
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _check(self) -> WebhookConfig:
        if not _WEBHOOK_NAME.match(self.name):
            raise ValueError(
                f"webhook name {self.name!r} is not valid: use letters, digits, '_', '.' "
                "or '-' (at most 64 characters)"
            )
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"webhook {self.name!r}: url {self.url!r} is not an http:// or https:// URL"
            )
        if not self.events:
            raise ValueError(f"webhook {self.name!r}: events is empty (use ['*'] for all)")
        try:
            check_patterns(self.events)
        except EventError as exc:
            raise ValueError(f"webhook {self.name!r}: {exc.message}") from None
        return self

    @property
    def consumer(self) -> str:
        """The outbox consumer (cursor) of this webhook."""
        return f"webhook:{self.name}"
