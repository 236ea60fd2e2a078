"""HTTP webhooks: events POSTed as signed JSON, each webhook an outbox consumer.

Every delivery carries::

    Content-Type: application/json
    X-Lakeforge-Event: <type>
    X-Lakeforge-Delivery: <event id>          (the same on every retry: deduplicate on it)
    X-Lakeforge-Timestamp: <unix seconds>
    X-Lakeforge-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

(the signature only when the webhook has a secret). Receivers check it with
:func:`verify_signature`. A 2xx answer delivers the event; anything else, a redirect
included, or no answer within ``timeout_s``, is a failed attempt, retried with backoff.
Delivery is at least once, in event order per webhook; every attempt is logged in
``webhook_deliveries``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select

from lakeforge.errors import LakeforgeError
from lakeforge.events._config import WebhookConfig
from lakeforge.events._outbox import Event, Outbox
from lakeforge.state import as_utc, webhook_deliveries

SIGNATURE_PREFIX = "sha256="
_USER_AGENT = "lakeforge-webhooks"
_ERROR_CHARS = 2000


class DeliveryError(LakeforgeError):
    """A webhook attempt that did not get a 2xx answer."""


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Delivery:
    """One logged attempt to deliver an event to a webhook."""

    webhook: str
    event_id: int
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    at: datetime


@dataclass
class DeliveryReport:
    """One pass over the webhooks: events delivered, and the failure that stopped each."""

    delivered: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.delivered.values())


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-Lakeforge-Signature`` value of ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    header: str | None,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` signs ``body`` at ``timestamp`` with ``secret``, recently enough.

    For receivers: pass the raw request body and the ``X-Lakeforge-Timestamp`` and
    ``X-Lakeforge-Signature`` headers. A timestamp further than ``tolerance_s`` from
    now is refused, so a captured request cannot be replayed later.
    """
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, sent, raw), header.strip())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer that is not 2xx, not a place to resend a signed body."""

    def redirect_request(self, *_: Any, **__: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect())


def send(webhook: WebhookConfig, event: Event) -> Attempt:
    """POST ``event`` to ``webhook`` once; never raises for HTTP or network failures."""
    body = json.dumps(event.to_dict(), separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        "X-Lakeforge-Event": event.type,
        "X-Lakeforge-Delivery": str(event.id),
        "X-Lakeforge-Timestamp": str(timestamp),
    }
    if webhook.secret:
        headers["X-Lakeforge-Signature"] = sign(webhook.secret, timestamp, body)
    request = urllib.request.Request(webhook.url, data=body, headers=headers, method="POST")
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        with _opener.open(request, timeout=webhook.timeout_s) as response:
            status = int(response.status)
            response.read(65536)
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except urllib.error.HTTPError as exc:
        status = exc.code
        error = f"HTTP {exc.code} {exc.reason}"
        exc.close()
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            error = f"no answer within {webhook.timeout_s:g} s"
        else:
            error = f"cannot connect: {exc.reason}"
    except TimeoutError:
        error = f"no answer within {webhook.timeout_s:g} s"
    except (OSError, http.client.HTTPException, ValueError) as exc:  # resets, bad answers
        error = f"{type(exc).__name__}: {exc}"
    duration_ms = round((time.perf_counter() - started) * 1000)
    return Attempt(status, None if error is None else error[:_ERROR_CHARS], duration_ms)


def _log(outbox: Outbox, webhook: WebhookConfig, event: Event, attempt: Attempt) -> int:
    log = webhook_deliveries.c
    with outbox.state.connect_engine().begin() as conn:
        previous = conn.execute(
            select(func.count()).where(log.webhook == webhook.name, log.event_id == event.id)
        ).scalar_one()
        number = int(previous) + 1
        conn.execute(
            insert(webhook_deliveries).values(
                webhook=webhook.name,
                event_id=event.id,
                attempt=number,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
                at=datetime.now(UTC),
            )
        )
    return number


def _handler(
    outbox: Outbox, webhook: WebhookConfig, failures: list[str]
) -> Callable[[Event], None]:
    def deliver(event: Event) -> None:
        attempt = send(webhook, event)
        number = _log(outbox, webhook, event, attempt)
        if not attempt.ok:
            failures.append(f"event {event.id} ({event.type}), attempt {number}: {attempt.error}")
            raise DeliveryError(f"webhook {webhook.name!r}: {failures[-1]}")

    return deliver


def deliver_webhooks(outbox: Outbox, webhooks: Sequence[WebhookConfig]) -> DeliveryReport:
    """One pass: each webhook (consumer ``webhook:<name>``) gets its pending events.

    A webhook that fails stops at that event until its backoff ends; the others go on.
    """
    names = [webhook.name for webhook in webhooks]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise LakeforgeError(
            f"webhook names must be unique (each has its own cursor): {', '.join(twice)}"
        )
    report = DeliveryReport()
    for webhook in webhooks:
        failures: list[str] = []
        handler = _handler(outbox, webhook, failures)
        count = outbox.consume(webhook.consumer, handler, types=webhook.events)
        if count:
            report.delivered[webhook.name] = count
        if failures:
            report.failed[webhook.name] = failures[-1]
    return report


def run_dispatcher(
    outbox: Outbox,
    webhooks: Sequence[WebhookConfig],
    *,
    interval_s: float = 1.0,
    stop: threading.Event | None = None,
    once: bool = False,
    on_report: Callable[[DeliveryReport], None] | None = None,
) -> int:
    """Deliver webhooks every ``interval_s`` until ``stop`` is set (or one pass if ``once``).

    ``on_report`` sees every pass's report. Returns the number of events delivered.
    """
    stop = stop or threading.Event()
    total = 0
    while not stop.is_set():
        report = deliver_webhooks(outbox, webhooks)
        total += report.total
        if on_report is not None:
            on_report(report)
        if once:
            break
        stop.wait(interval_s)
    return total


def deliveries(
    outbox: Outbox,
    *,
    webhook: str | None = None,
    event_id: int | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """Logged delivery attempts, oldest first (the newest ``limit``)."""
    log = webhook_deliveries.c
    query = select(webhook_deliveries)
    if webhook is not None:
        query = query.where(log.webhook == webhook)
    if event_id is not None:
        query = query.where(log.event_id == event_id)
    with outbox.state.connect_engine().connect() as conn:
        rows = list(conn.execute(query.order_by(log.id.desc()).limit(limit)))
    return [
        Delivery(
            webhook=row.webhook,
            event_id=int(row.event_id),
            attempt=int(row.attempt),
            status_code=row.status_code,
            error=row.error,
            duration_ms=int(row.duration_ms),
            at=as_utc(row.at),
        )
        for row in reversed(rows)
    ]
