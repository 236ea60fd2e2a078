"""Webhooks against real local HTTP receivers: signatures, retries, and a killed sender."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from typer.testing import CliRunner

import lakeforge.cli._events as cli_events
from lakeforge import Workspace
from lakeforge.cli._context import CliState
from lakeforge.events import (
    ALIAS_MOVED,
    APPROVAL_REQUESTED,
    JOB_FINISHED,
    MODEL_VERSION_CREATED,
    Outbox,
    WebhookConfig,
    deliver_webhooks,
    deliveries,
    run_dispatcher,
    sign,
    verify_signature,
)
from lakeforge.state import event_cursors
from tests.events.conftest import SECRET, Receiver


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_receiver_gets_every_event_signed_with_the_right_headers(
    ws: Workspace, receivers: Callable[..., Receiver]
) -> None:
    outbox = Outbox(ws.state)
    ids = [
        outbox.emit(MODEL_VERSION_CREATED, "dev.ml.delay", {"version": 1}, actor="ada"),
        outbox.emit(APPROVAL_REQUESTED, "dev.ml.delay", {"version": 1}),
        outbox.emit(ALIAS_MOVED, "dev.ml.delay", {"alias": "champion", "to": 1}),
    ]
    everything, approvals = receivers(), receivers()
    hooks = [
        WebhookConfig(name="all", url=everything.url, secret=SECRET),
        WebhookConfig(name="approvals", url=approvals.url, events=["approval.*"]),
    ]
    report = deliver_webhooks(outbox, hooks)
    assert report.delivered == {"all": 3, "approvals": 1} and report.failed == {}
    assert deliver_webhooks(outbox, hooks).total == 0  # delivered once

    assert everything.ids() == ids
    for received, event in zip(everything.requests, outbox.list(), strict=True):
        assert received.event == event.to_dict()
        assert received.headers["Content-Type"] == "application/json"
        assert received.headers["X-Lakeforge-Event"] == event.type
        assert received.headers["X-Lakeforge-Delivery"] == str(event.id)
        assert abs(int(received.headers["X-Lakeforge-Timestamp"]) - time.time()) < 60
        assert received.signed
    assert everything.requests[0].event["actor"] == "ada"
    assert approvals.ids() == [ids[1]]
    assert "X-Lakeforge-Signature" not in approvals.requests[0].headers

    log = deliveries(outbox, webhook="all")
    assert [(d.event_id, d.attempt, d.status_code, d.error) for d in log] == [
        (i, 1, 200, None) for i in ids
    ]

    # What receivers must refuse: another secret, a changed body, an old or absent signature.
    sample = everything.requests[0]
    stamp, header = sample.headers["X-Lakeforge-Timestamp"], sample.headers["X-Lakeforge-Signature"]
    assert not verify_signature("other", stamp, sample.body, header)
    assert not verify_signature(SECRET, stamp, sample.body + b" ", header)
    assert not verify_signature(SECRET, stamp, sample.body, None)
    assert not verify_signature(SECRET, "soon", sample.body, header)
    old = int(time.time()) - 600
    assert not verify_signature(SECRET, old, sample.body, sign(SECRET, old, sample.body))
    assert verify_signature(
        SECRET, old, sample.body.decode(), sign(SECRET, old, sample.body), now=old + 1
    )


def test_a_receiver_that_is_down_loses_nothing(
    ws: Workspace, receivers: Callable[..., Receiver]
) -> None:
    clock = Clock()
    outbox = Outbox(ws.state, clock=clock)
    ids = [outbox.emit(JOB_FINISHED, f"job{i}", {"status": "ok"}) for i in range(3)]
    port = _free_port()
    hook = WebhookConfig(name="ops", url=f"http://127.0.0.1:{port}/hook", secret=SECRET)

    report = deliver_webhooks(outbox, [hook])
    assert report.delivered == {} and "cannot connect" in report.failed["ops"]
    [attempt] = deliveries(outbox, webhook="ops")
    assert (attempt.event_id, attempt.attempt, attempt.status_code) == (ids[0], 1, None)
    assert attempt.error is not None and "cannot connect" in attempt.error
    cursor = outbox.cursor(hook.consumer)
    assert cursor is not None and (cursor.last_event_id, cursor.attempts) == (0, 1)
    assert cursor.last_error is not None and f"event {ids[0]}" in cursor.last_error
    assert deliver_webhooks(outbox, [hook]).failed == {}  # backing off: no attempt
    assert len(deliveries(outbox)) == 1

    receiver = receivers(port)
    receiver.statuses = [500, 302]  # up, but failing; a redirect is not a delivery
    clock.now += timedelta(seconds=1)
    assert deliver_webhooks(outbox, [hook]).failed == {
        "ops": f"event {ids[0]} (job.finished), attempt 2: HTTP 500 Internal Server Error"
    }
    clock.now += timedelta(seconds=2)
    assert "attempt 3: HTTP 302" in deliver_webhooks(outbox, [hook]).failed["ops"]
    clock.now += timedelta(seconds=4)
    assert deliver_webhooks(outbox, [hook]).delivered == {"ops": 3}

    assert receiver.ids() == [ids[0], ids[0], *ids]
    assert all(r.signed for r in receiver.requests)
    assert [(d.event_id, d.attempt, d.status_code) for d in deliveries(outbox)] == [
        (ids[0], 1, None),
        (ids[0], 2, 500),
        (ids[0], 3, 302),
        (ids[0], 4, 200),
        (ids[1], 1, 200),
        (ids[2], 1, 200),
    ]


def test_a_slow_receiver_times_out(ws: Workspace, receivers: Callable[..., Receiver]) -> None:
    outbox = Outbox(ws.state)
    outbox.emit(JOB_FINISHED, "j", {})
    receiver = receivers(delay_s=0.3)
    hook = WebhookConfig(name="slow", url=receiver.url, timeout_s=0.1)
    assert "no answer within 0.1 s" in deliver_webhooks(outbox, [hook]).failed["slow"]
    time.sleep(0.3)  # let the receiver finish before it is stopped


def test_webhook_config_is_checked() -> None:
    for url in ("ftp://example.com/hook", "file:///etc/passwd", "example.com/hook", "http://"):
        with pytest.raises(ValidationError, match=f"webhook 'ops': url '{url}' is not an http"):
            WebhookConfig(name="ops", url=url)
    with pytest.raises(ValidationError, match="matches no event type"):
        WebhookConfig(name="ops", url="https://example.com", events=["aproval.*"])
    with pytest.raises(ValidationError, match="webhook name"):
        WebhookConfig(name="has space", url="https://example.com")
    hook = WebhookConfig(name="ops", url="https://example.com", secret="topsecret")
    assert hook.events == ["*"] and hook.consumer == "webhook:ops"
    assert "topsecret" not in repr(hook)


def test_dispatcher_loop_and_cli(
    ws: Workspace,
    project_dir: Path,
    receivers: Callable[..., Receiver],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox = Outbox(ws.state)
    receiver = receivers()
    hook = WebhookConfig(name="r", url=receiver.url, secret=SECRET)
    stop = threading.Event()
    loop = threading.Thread(
        target=run_dispatcher, args=(outbox, [hook]), kwargs={"interval_s": 0.02, "stop": stop}
    )
    loop.start()
    first = outbox.emit(JOB_FINISHED, "j", {})
    deadline = time.monotonic() + 10
    while receiver.ids() != [first] and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    loop.join()
    assert receiver.ids() == [first]

    second = outbox.emit(JOB_FINISHED, "j", {})
    monkeypatch.setattr(cli_events, "webhooks_for", lambda ws: [hook])
    state = CliState(target="dev", project_dir=project_dir)
    result = CliRunner().invoke(cli_events.app, ["deliver", "--once"], obj=state)
    assert result.exit_code == 0, result.output
    assert "r: delivered 1 event" in result.output
    assert receiver.ids() == [first, second]

    # Without --once it runs until SIGTERM (or Ctrl-C), then gives its lease back.
    third = outbox.emit(JOB_FINISHED, "j", {})

    def terminate() -> None:
        deadline = time.monotonic() + 30
        while receiver.ids()[-1] != third and time.monotonic() < deadline:
            time.sleep(0.01)
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:  # never kill pytest
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=terminate)
    killer.start()
    result = CliRunner().invoke(cli_events.app, ["deliver", "--interval", "0.05"], obj=state)
    killer.join()
    state.workspace().close()
    assert result.exit_code == 0, result.output
    assert "stopped" in result.output
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with ws.state.connect_engine().connect() as conn:
        assert conn.execute(sa.select(event_cursors.c.lease_owner)).scalar_one() is None


SENDER = """
import sys
import lakeforge
from lakeforge.events import Outbox, WebhookConfig, run_dispatcher

ws = lakeforge.connect("dev", project_dir=sys.argv[1])
hook = WebhookConfig(name="slow", url=sys.argv[2], secret=sys.argv[3])
run_dispatcher(Outbox(ws.state, lease_s=1.0), [hook], interval_s=0.05)
"""


def _sender(project_dir: Path, url: str, log: BinaryIO) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, str(project_dir), url, SECRET],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "no_proxy": "127.0.0.1", "MLFLOW_DISABLE_TELEMETRY": "true"},
    )


def _wait(condition: Callable[[], bool], what: str, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; sender stderr:\n{log.read_text()}")
        time.sleep(0.02)


def test_a_killed_sender_loses_nothing_after_a_restart(
    ws: Workspace, project_dir: Path, tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    outbox = Outbox(ws.state)
    with ws.state.connect_engine().begin() as conn:
        ids = [outbox.emit(JOB_FINISHED, f"job{i}", {"i": i}, conn=conn) for i in range(40)]
    receiver = receivers(delay_s=0.05)
    log = tmp_path / "sender.log"

    with log.open("ab") as stderr:
        first = _sender(project_dir, receiver.url, stderr)
        try:
            _wait(lambda: len(receiver.requests) >= 8, "the first deliveries", log)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        assert first.returncode == -signal.SIGKILL
        assert len(set(receiver.ids())) < len(ids)  # killed mid-way

        def done() -> bool:
            cursor = outbox.cursor("webhook:slow")
            return cursor is not None and cursor.last_event_id == ids[-1]

        second = _sender(project_dir, receiver.url, stderr)
        try:
            _wait(done, "the restarted sender to deliver every event", log)
        finally:
            second.kill()
            second.wait()

    received = receiver.ids()
    assert set(received) == set(ids)  # nothing lost
    assert len(received) - len(ids) <= 1  # at most the event in flight at the kill, again
    assert all(r.signed for r in receiver.requests)
