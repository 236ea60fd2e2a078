"""``webhooks:`` in ``lakeforge.yaml``: where events are POSTed, and which ones.

Imports nothing from the database or the project, so the project config can use it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, model_validator

from lakeforge.project._base import Strict
from lakeforge.project._events import EventError, check_patterns

_WEBHOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
SECRET_SOURCES = "webhook_secret_sources"
"""Validation context key: webhook name -> its ``secret`` as written, before ``${VAR}``."""


class WebhookConfig(Strict):
    """One HTTP endpoint that receives events as signed JSON POSTs.

    ``secret`` signs every delivery (``X-Lakeforge-Signature``); use ``${ENV_VAR}`` in
    ``lakeforge.yaml`` rather than writing it down. An empty secret (say an environment
    variable set to nothing) is refused, so deliveries never go unsigned by accident;
    ``unsigned: true`` sends them unsigned on purpose. ``events`` are glob patterns over
    event types (``["approval.*", "alias.moved"]``); ``["*"]`` is every event.
    ``timeout_s`` bounds each attempt as a whole: connecting, sending and the answer.
    """

    name: str
    url: str
    secret: str | None = Field(default=None, repr=False)
    events: list[str] = Field(default_factory=lambda: ["*"])
    unsigned: bool = False
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> WebhookConfig:
        if not _WEBHOOK_NAME.fullmatch(self.name):
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
        self._check_secret(info)
        return self

    def _check_secret(self, info: ValidationInfo) -> None:
        if self.secret is None or self.secret.strip():
            if self.unsigned and self.secret is not None:
                raise ValueError(
                    f"webhook {self.name!r}: unsigned: true and a secret contradict each "
                    "other; remove one (a secret signs every delivery)"
                )
            return
        if self.unsigned:
            self.secret = None
            return
        written = ((info.context or {}).get(SECRET_SOURCES) or {}).get(self.name)
        names = _ENV_REF.findall(written) if isinstance(written, str) else []
        source = (
            f" (from {written!r}: environment variable {', '.join(names)} is set but empty)"
            if names
            else ""
        )
        raise ValueError(
            f"webhook {self.name!r}: secret is empty{source}, so deliveries would go "
            "unsigned; set a secret, or add unsigned: true to send them unsigned on purpose"
        )

    @property
    def consumer(self) -> str:
        """The outbox consumer (cursor) of this webhook."""
        return f"webhook:{self.name}"
