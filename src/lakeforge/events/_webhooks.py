"""HTTP webhooks: events POSTed as signed JSON, each webhook an outbox consumer.

Every delivery carries::

    Content-Type: application/json
    X-Lakeforge-Event: <type>
    X-Lakeforge-Delivery: <event id>          (the same on every retry: deduplicate on it)
    X-Lakeforge-Timestamp: <unix seconds>
    X-Lakeforge-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the secret>

(the signature unless the webhook says ``unsigned: true``). Receivers check it with
:func:`verify_signature`. A 2xx answer delivers the event; anything else, a redirect
included, or no whole answer within ``timeout_s`` (a deadline for the attempt as a
whole, so a receiver that answers a byte at a time is cut off too), is a failed
attempt, retried with backoff. Delivery is at least once, in event order per webhook;
every attempt is logged in ``webhook_deliveries``. Webhooks are delivered concurrently,
each by its own thread behind its own cursor, so one that is slow or down never delays
the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select

from lakeforge.errors import LakeforgeError
from lakeforge.events._outbox import Event, Outbox
from lakeforge.project import WebhookConfig
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


class _Deadline:
    """Shuts the connections of one attempt when ``seconds`` are up, whatever they are doing.

    A socket timeout bounds each read alone, so a receiver that sends a byte a second
    never trips it; shutting the socket from a timer bounds the attempt as a whole.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._connections:
                _shut(connection.sock)

    def watch(self, connection: http.client.HTTPConnection) -> None:
        """End ``connection`` at the deadline, and refuse to use it once connected after it."""
        with self._lock:
            self._connections.append(connection)
        connect = connection.connect

        def connect_in_time() -> None:
            connect()
            with self._lock:
                if self.expired:
                    _shut(connection.sock)
                    raise TimeoutError("the deadline passed while connecting")

        setattr(connection, "connect", connect_in_time)  # noqa: B010 (mypy: no method assignment)


def _shut(sock: socket.socket | None) -> None:
    """Wake whoever is blocked on ``sock``: its reads return end-of-file, its writes fail."""
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed, or handed over to a TLS socket
            sock.shutdown(socket.SHUT_RDWR)


class _DeadlineRequest(urllib.request.Request):
    """A request whose connections ``deadline`` watches."""

    def __init__(self, url: str, deadline: _Deadline, **options: Any) -> None:
        super().__init__(url, **options)
        self.deadline = deadline


class _DeadlineMixin(urllib.request.AbstractHTTPHandler):
    def do_open(self, http_class: Any, req: urllib.request.Request, **options: Any) -> Any:
        deadline = getattr(req, "deadline", None)
        if deadline is None:
            return super().do_open(http_class, req, **options)

        def connection(host: str, **args: Any) -> http.client.HTTPConnection:
            opened: http.client.HTTPConnection = http_class(host, **args)
            deadline.watch(opened)
            return opened

        return super().do_open(connection, req, **options)


class _HTTPHandler(_DeadlineMixin, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_DeadlineMixin, urllib.request.HTTPSHandler):
    pass


_opener = urllib.request.build_opener(_NoRedirect(), _HTTPHandler(), _HTTPSHandler())


def send(webhook: WebhookConfig, event: Event) -> Attempt:
    """POST ``event`` to ``webhook`` once, ``timeout_s`` in all; never raises for HTTP or
    network failures (a deadline that passes is one: "no answer within ...")."""
    body = json.dumps(event.to_dict(), separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
        "X-Lakeforge-Event": event.type,
        "X-Lakeforge-Delivery": str(event.id),
        "X-Lakeforge-Timestamp": str(timestamp),
    }
    if webhook.secret and not webhook.unsigned:
        headers["X-Lakeforge-Signature"] = sign(webhook.secret, timestamp, body)
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    with _Deadline(webhook.timeout_s) as deadline:
        request = _DeadlineRequest(webhook.url, deadline, data=body, headers=headers, method="POST")
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
    if error is not None and deadline.expired:
        status, error = None, f"no answer within {webhook.timeout_s:g} s"
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


def _check_unique(webhooks: Sequence[WebhookConfig]) -> None:
    names = [webhook.name for webhook in webhooks]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise LakeforgeError(
            f"webhook names must be unique (each has its own cursor): {', '.join(twice)}"
        )


def _deliver_one(outbox: Outbox, webhook: WebhookConfig) -> DeliveryReport:
    """One pass of one webhook (consumer ``webhook:<name>``) over its pending events."""
    failures: list[str] = []
    count = outbox.consume(
        webhook.consumer, _handler(outbox, webhook, failures), types=webhook.events
    )
    report = DeliveryReport()
    if count:
        report.delivered[webhook.name] = count
    if failures:
        report.failed[webhook.name] = failures[-1]
    return report


def deliver_webhooks(outbox: Outbox, webhooks: Sequence[WebhookConfig]) -> DeliveryReport:
    """One pass: each webhook gets its pending events, all webhooks at the same time.

    A webhook that fails stops at that event until its backoff ends; the others go on,
    without waiting for it.
    """
    _check_unique(webhooks)
    report = DeliveryReport()
    if not webhooks:
        return report
    with ThreadPoolExecutor(len(webhooks), thread_name_prefix="webhook") as pool:
        passes = [pool.submit(_deliver_one, outbox, webhook) for webhook in webhooks]
    for done in passes:
        one = done.result()
        report.delivered.update(one.delivered)
        report.failed.update(one.failed)
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

    Each webhook has its own worker thread and passes, so one that is slow or down never
    delays another. ``on_report`` sees every pass's report (one webhook's, or with
    ``once`` all of them), one call at a time. A worker that fails unexpectedly sets
    ``stop``, and its error is raised once every worker has finished its attempt.
    Returns the number of events delivered.
    """
    if once:
        report = deliver_webhooks(outbox, webhooks)
        if on_report is not None:
            on_report(report)
        return report.total
    _check_unique(webhooks)
    stop = stop or threading.Event()
    lock = threading.Lock()
    delivered: list[int] = []
    errors: list[BaseException] = []

    def work(webhook: WebhookConfig) -> None:
        try:
            while not stop.is_set():
                report = _deliver_one(outbox, webhook)
                with lock:
                    delivered.append(report.total)
                    if on_report is not None:
                        on_report(report)
                stop.wait(interval_s)
        except BaseException as exc:  # re-raised by the caller's thread below
            errors.append(exc)
            stop.set()

    workers = [
        threading.Thread(target=work, args=(webhook,), name=webhook.consumer)
        for webhook in webhooks
    ]
    for worker in workers:
        worker.start()
    try:
        stop.wait()  # Ctrl-C (or SIGTERM made KeyboardInterrupt) interrupts it
    finally:
        stop.set()
        for worker in workers:
            worker.join()  # each finishes its attempt and gives its lease back
    if errors:
        raise errors[0]
    return sum(delivered)


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
