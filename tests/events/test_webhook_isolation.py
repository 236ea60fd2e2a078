"""One webhook never holds up another: a total deadline per attempt, a worker per webhook.

Also: a webhook whose secret is empty is refused unless it says ``unsigned: true``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from lakeforge import Workspace
from lakeforge.errors import ConfigError
from lakeforge.events import (
    JOB_FINISHED,
    Outbox,
    WebhookConfig,
    deliver_webhooks,
    deliveries,
    run_dispatcher,
)
from lakeforge.project import Project
from lakeforge.state import event_cursors
from tests.events.conftest import SECRET, Receiver, Trickler


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_timeout_s_bounds_a_whole_attempt_against_a_trickling_receiver(
    ws: Workspace,
    receivers: Callable[..., Receiver],
    tricklers: Callable[..., Trickler],
) -> None:
    """The receiver sends a byte a second (its 200 would take ~80 s): cut off at ~2 s."""
    outbox = Outbox(ws.state)
    ids = [outbox.emit(JOB_FINISHED, f"job{i}", {}) for i in range(3)]
    timeline: list[str] = []
    slow, healthy = tricklers(timeline), receivers()
    hooks = [
        WebhookConfig(name="slow", url=slow.url, secret=SECRET, timeout_s=2),
        WebhookConfig(name="healthy", url=healthy.url, secret=SECRET),
    ]

    started = time.monotonic()
    report = deliver_webhooks(outbox, hooks)
    elapsed = time.monotonic() - started

    assert report.failed == {
        "slow": f"event {ids[0]} (job.finished), attempt 1: no answer within 2 s"
    }
    assert report.delivered == {"healthy": 3} and healthy.ids() == ids
    assert elapsed < 8  # one attempt, a total of ~2 s (not a byte every < 2 s for ~80 s)
    [attempt] = deliveries(outbox, webhook="slow")
    assert attempt.status_code is None and 1500 <= attempt.duration_ms < 8000
    _wait(lambda: "slow:end" in timeline, "the receiver to see the sender hang up")
    assert slow.durations[0] < 8


def test_a_stalled_webhook_does_not_delay_another(
    ws: Workspace,
    receivers: Callable[..., Receiver],
    tricklers: Callable[..., Trickler],
) -> None:
    """The stalled receiver lets go only once the healthy one has every event.

    Delivered one after the other, the healthy webhook would get nothing until the stalled
    attempt ended (after its 30 s timeout, or the receiver's own ~80 s): the order of
    ``timeline`` shows which came first, whatever the machine's speed.
    """
    outbox = Outbox(ws.state)
    first = [outbox.emit(JOB_FINISHED, f"job{i}", {}) for i in range(3)]
    timeline: list[str] = []
    healthy = receivers(timeline=timeline, name="healthy")
    last: list[int] = []
    slow = tricklers(timeline, release=lambda: bool(last) and last[0] in healthy.ids())
    hooks = [
        WebhookConfig(name="slow", url=slow.url, secret=SECRET, timeout_s=30),
        WebhookConfig(name="healthy", url=healthy.url, secret=SECRET),
    ]
    stop = threading.Event()
    loop = threading.Thread(
        target=run_dispatcher, args=(outbox, hooks), kwargs={"interval_s": 0.05, "stop": stop}
    )
    loop.start()
    try:
        _wait(lambda: healthy.ids() == first, "the healthy webhook's first events")
        _wait(lambda: "slow:start" in timeline, "the stalled attempt to begin")
        # A later event reaches it too while the stalled attempt is still open.
        last.append(outbox.emit(JOB_FINISHED, "later", {}))
        _wait(lambda: "slow:end" in timeline, "the stalled attempt to end", timeout_s=120)
    finally:
        stop.set()
        loop.join()

    assert healthy.ids() == [*first, *last]
    end = timeline.index("slow:end")
    assert timeline.index("slow:start") < timeline.index(f"healthy:{last[0]}") < end, timeline
    cursor = outbox.cursor("webhook:slow")
    assert cursor is not None and cursor.last_event_id == 0 and cursor.attempts >= 1
    healthy_cursor = outbox.cursor("webhook:healthy")
    assert healthy_cursor is not None and healthy_cursor.last_event_id == last[0]
    with ws.state.connect_engine().connect() as conn:  # both workers gave their lease back
        assert list(conn.execute(sa.select(event_cursors.c.lease_owner))) == [(None,), (None,)]


def _project(tmp_path: Path, webhook: str) -> Path:
    folder = tmp_path / "p"
    folder.mkdir(parents=True)
    (folder / "lakeforge.yaml").write_text(f"name: hooks\nwebhooks:\n  - {webhook}\n")
    return folder


def test_an_empty_secret_is_refused_unless_the_webhook_says_unsigned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WH_SECRET", "")
    hook = '{name: ops, url: "https://hooks.example.com/x", secret: "${WH_SECRET}"}'
    with pytest.raises(ConfigError) as refused:
        Project.load(_project(tmp_path, hook))
    message = str(refused.value)
    assert "webhook 'ops'" in message and "WH_SECRET" in message
    assert "unsigned: true" in message

    with pytest.raises(ValidationError, match="webhook 'ops': secret is empty.*unsigned: true"):
        WebhookConfig(name="ops", url="https://example.com", secret=" ")
    with pytest.raises(ValidationError, match="webhook 'ops': unsigned: true and a secret"):
        WebhookConfig(name="ops", url="https://example.com", secret="s", unsigned=True)

    monkeypatch.setenv("WH_SECRET", "whsec_from_env")
    [signed] = Project.load(_project(tmp_path / "a", hook)).config.webhooks
    assert signed.secret == "whsec_from_env" and not signed.unsigned
    monkeypatch.setenv("WH_SECRET", "")
    unsigned = hook[:-1] + ", unsigned: true}"
    [declared] = Project.load(_project(tmp_path / "b", unsigned)).config.webhooks
    assert declared.unsigned and declared.secret is None


def test_an_unsigned_webhook_sends_no_signature(
    ws: Workspace, receivers: Callable[..., Receiver]
) -> None:
    outbox = Outbox(ws.state)
    outbox.emit(JOB_FINISHED, "j", {})
    receiver = receivers()
    hook = WebhookConfig(name="open", url=receiver.url, secret="", unsigned=True)
    assert deliver_webhooks(outbox, [hook]).delivered == {"open": 1}
    assert "X-Lakeforge-Signature" not in receiver.requests[0].headers
