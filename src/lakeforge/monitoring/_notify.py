"""Alert channels: the log, and email over SMTP driven from the events outbox.

(The third channel, the ``monitor.alert`` event itself, is written by ``_alerts`` in the
transaction that moves the rule's state; webhooks and job triggers consume it.)

Email is an outbox consumer (``monitor-email``) with a durable cursor, as webhooks are: an
alert committed but not yet mailed (a crash, the SMTP server down) is mailed on the next
pass, and the cursor moves past an event only once its mail was accepted, so a rerun does
not mail it again. The one window left is a crash between the server accepting the mail
and the cursor moving; the mail then goes twice with the same ``Message-ID``
(``<lakeforge-alert-<event id>...>``), which mail clients use to drop the copy.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from typing import TYPE_CHECKING, Final

from lakeforge.errors import LakeforgeError
from lakeforge.events import MONITOR_ALERT, Event
from lakeforge.project import MonitorSpec, SmtpConfig

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.monitoring._alerts import AlertTransition

EMAIL_CONSUMER: Final = "monitor-email"
_log = logging.getLogger("lakeforge.monitoring.alerts")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class NotifyError(LakeforgeError):
    """An alert notification that could not be sent (it stays pending)."""


def log_transitions(spec: MonitorSpec, moved: Sequence[AlertTransition]) -> None:
    """The log channel: one line per move of a rule that lists ``log``."""
    logged = {rule.name for rule in spec.alerts if "log" in rule.channels}
    for t in moved:
        if t.rule not in logged:
            continue
        level = logging.WARNING if t.state == "triggered" else logging.INFO
        _log.log(
            level,
            "monitor %s: alert %s %s (%s of %s = %s %s %s; %s windows breached of %s)",
            t.monitor,
            t.rule,
            t.state,
            t.metric,
            t.column_name,
            t.value,
            t.comparator,
            t.threshold,
            t.breaches,
            t.windows,
        )


def smtp_config(ws: Workspace) -> SmtpConfig | None:
    """The project's ``smtp:`` settings, if it declares them."""
    return ws.project.config.smtp


def deliver_emails(ws: Workspace, smtp: SmtpConfig | None = None) -> int:
    """Mail every pending ``monitor.alert`` event that names recipients; the number mailed.

    A failure (no SMTP settings, the server down) leaves the event pending, and the
    consumer backs off (1 s doubling to 300 s) before the next try.
    """
    settings = smtp or smtp_config(ws)
    mailed = 0

    def handle(event: Event) -> None:
        nonlocal mailed
        recipients = [str(r) for r in event.payload.get("email") or []]
        if not recipients:
            return
        if settings is None:
            raise NotifyError(
                f"alert {event.payload.get('rule')!r} of monitor {event.subject!r} has email "
                "recipients, but lakeforge.yaml declares no smtp: settings"
            )
        send_email(settings, recipients, alert_message(settings, event, recipients))
        mailed += 1

    ws.events.consume(EMAIL_CONSUMER, handle, types=[MONITOR_ALERT])
    cursor = ws.events.cursor(EMAIL_CONSUMER)
    if cursor is not None and cursor.last_error:
        _log.error(
            "alert emails pending (next try after %s): %s",
            cursor.next_attempt_at,
            cursor.last_error,
        )
    return mailed


def alert_message(smtp: SmtpConfig, event: Event, recipients: Sequence[str]) -> EmailMessage:
    """The email of one ``monitor.alert`` event."""
    p = event.payload
    message = EmailMessage()
    message["Subject"] = (
        f"[lakeforge] monitor {event.subject}: alert {p.get('rule')} {p.get('state')}"
    )
    message["From"] = smtp.sender
    message["To"] = ", ".join(recipients)
    domain = smtp.sender.rsplit("@", 1)[1]
    key = _UNSAFE.sub("_", str(p.get("dedupe_key", "")))
    message["Message-ID"] = f"<lakeforge-alert-{event.id}-{key}@{domain}>"
    lines = [
        f"Monitor {event.subject}: alert {p.get('rule')} is {p.get('state')} "
        f"(was {p.get('previous')}).",
        "",
        f"{p.get('metric')} of {p.get('column_name')} = {p.get('value')} "
        f"{p.get('comparator')} {p.get('threshold')}",
        f"windows breached: {p.get('breaches')} (rule: {p.get('window')})",
        f"newest window: {p.get('window_start')} to {p.get('window_end')}",
    ]
    if p.get("action"):
        lines.append(f"action: job {p['action'].get('job')} {p['action'].get('parameters')}")
    lines += ["", f"event {event.id} at {event.created_at.isoformat()}"]
    message.set_content("\n".join(lines) + "\n")
    return message


def send_email(smtp: SmtpConfig, recipients: Sequence[str], message: EmailMessage) -> None:
    """Send one message through the SMTP server (STARTTLS and login when configured)."""
    password = None
    if smtp.password_env is not None:
        password = os.environ.get(smtp.password_env)
        if password is None:
            raise NotifyError(
                f"smtp password_env {smtp.password_env!r} is not set in the environment"
            )
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as client:
            if smtp.starttls:
                client.starttls(context=ssl.create_default_context())
            if smtp.username is not None and password is not None:
                client.login(smtp.username, password)
            client.send_message(message, from_addr=smtp.sender, to_addrs=list(recipients))
    except (OSError, smtplib.SMTPException) as exc:
        raise NotifyError(f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}") from None
