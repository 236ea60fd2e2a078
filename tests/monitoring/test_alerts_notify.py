"""Alert channels end to end: a local webhook, a local SMTP server, and the retraining job
started by the scheduler's ``monitor_alert`` trigger."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.events import WebhookConfig, deliver_webhooks
from lakeforge.jobs import Scheduler
from lakeforge.monitoring._alerts import evaluate_tables
from lakeforge.monitoring._notify import EMAIL_CONSUMER, deliver_emails
from lakeforge.project import AlertRule, MonitorSpec, SmtpConfig
from tests.events.conftest import Receiver
from tests.monitoring.alert_helpers import DRIFT, drift_rows, free_port, smtp_server, write_metrics

PROFILE_T, DRIFT_T = "dev.mon.flights_profile_metrics", "dev.mon.flights_drift_metrics"
RULE = {
    "name": "dep_delay_drift",
    "metric": "drift_score",
    "column_name": "dep_delay",
    "comparator": ">=",
    "threshold": 0.1,
    "channels": ["log", "events", "email"],
    "email": ["oncall@example.com"],
    "action": {"job": "retrain", "parameters": {"reason": "drift"}},
}


def monitor() -> MonitorSpec:
    return MonitorSpec(
        name="flights", table="silver.flights", alerts=[AlertRule.model_validate(RULE)]
    )


def smtp(port: int) -> SmtpConfig:
    return SmtpConfig.model_validate({"host": "127.0.0.1", "port": port, "from": "lf@example.com"})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver()
    yield started
    started.stop()


def test_a_webhook_receives_the_alert_and_its_resolution(
    ws: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    hook = WebhookConfig(name="ops", url=receiver.url, events=["monitor.*"], unsigned=True)
    spec = monitor().model_copy(
        update={"alerts": [AlertRule.model_validate({**RULE, "channels": ["events"], "email": []})]}
    )
    write_metrics(ws, DRIFT_T, drift_rows([0.0, 0.4]), DRIFT)
    evaluate_tables(ws, spec, PROFILE_T, DRIFT_T)
    write_metrics(ws, DRIFT_T, drift_rows([0.0, 0.4, 0.0]), DRIFT)
    evaluate_tables(ws, spec, PROFILE_T, DRIFT_T)
    report = deliver_webhooks(ws.events, [hook])
    assert report.delivered == {"ops": 2}
    bodies = [r.event for r in receiver.requests]
    assert [(b["type"], b["subject"], b["payload"]["state"]) for b in bodies] == [
        ("monitor.alert", "flights", "triggered"),
        ("monitor.alert", "flights", "resolved"),
    ]
    assert bodies[0]["payload"]["action"] == {"job": "retrain", "parameters": {"reason": "drift"}}
    assert deliver_webhooks(ws.events, [hook]).delivered == {}  # nothing twice


def test_an_email_arrives_once_and_survives_a_server_that_was_down(ws: Workspace) -> None:
    port = free_port()
    write_metrics(ws, DRIFT_T, drift_rows([0.4]), DRIFT)
    # the SMTP server is down when the alert triggers: the email stays pending
    [moved] = evaluate_tables(ws, monitor(), PROFILE_T, DRIFT_T)
    cursor = ws.events.cursor(EMAIL_CONSUMER)
    assert cursor is not None and cursor.last_error is not None  # no smtp: settings
    assert "declares no smtp: settings" in cursor.last_error
    assert cursor.next_attempt_at is not None
    time.sleep(max(0.0, (cursor.next_attempt_at - moved.at).total_seconds()) + 0.1)
    assert deliver_emails(ws, smtp(port)) == 0  # still down: connection refused
    cursor = ws.events.cursor(EMAIL_CONSUMER)
    assert cursor is not None and "SMTP 127.0.0.1" in str(cursor.last_error)
    with smtp_server(port) as inbox:
        assert cursor.next_attempt_at is not None
        time.sleep(max(0.0, (cursor.next_attempt_at - cursor.updated_at).total_seconds()) + 0.1)
        assert deliver_emails(ws, smtp(port)) == 1
        assert deliver_emails(ws, smtp(port)) == 0  # a rerun sends nothing again
        [(recipients, mail)] = inbox.mails
    assert recipients == ["oncall@example.com"]
    assert mail["Subject"] == "[lakeforge] monitor flights: alert dep_delay_drift triggered"
    assert mail["Message-ID"].startswith(f"<lakeforge-alert-{moved.event_id}-flights_dep_delay")
    body = mail.get_payload()
    assert "drift_score of dep_delay = 0.4 >= 0.1" in str(body)


def test_evaluate_mails_right_away_when_smtp_is_configured(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setattr(
        "lakeforge.monitoring._notify.smtp_config", lambda _ws: smtp(port)
    )  # until lakeforge.yaml has smtp:
    with smtp_server(port) as inbox, lakeforge.connect("dev", project_dir=project_dir) as ws:
        write_metrics(ws, DRIFT_T, drift_rows([0.4]), DRIFT)
        evaluate_tables(ws, monitor(), PROFILE_T, DRIFT_T)
        assert [r for r, _ in inbox.mails] == [["oncall@example.com"]]


JOBS = """
name: mon
targets:
  dev: {{}}
jobs:
  retrain:
    parameters: {{reason: manual}}
    triggers:
      - {{type: monitor_alert, monitors: [flights]}}
    tasks:
      - key: train
        python: pipelines:train
        parameters:
          reason: "{{{{trigger.event.payload.action.parameters.reason}}}}"
          rule: "{{{{trigger.event.payload.rule}}}}"
          out: "{tmp}/retrained.txt"
"""
PIPELINES = """
def train(reason, rule, out):
    with open(out, "a") as handle:
        handle.write(f"{rule}:{reason}\\n")
"""


def test_the_monitor_alert_trigger_starts_the_retraining_job(tmp_path: Path) -> None:
    folder = tmp_path / "mon"
    folder.mkdir()
    (folder / "pipelines.py").write_text(textwrap.dedent(PIPELINES))
    (folder / "lakeforge.yaml").write_text(JOBS.format(tmp=tmp_path))
    spec = monitor().model_copy(
        update={"alerts": [AlertRule.model_validate({**RULE, "channels": ["events"], "email": []})]}
    )
    out = tmp_path / "retrained.txt"
    with lakeforge.connect("dev", project_dir=folder) as ws:
        scheduler = Scheduler(ws, background=False, jobs=["retrain"])
        assert scheduler.tick() == []  # first sight: the trigger's cursor starts here
        write_metrics(ws, DRIFT_T, drift_rows([0.4]), DRIFT)
        evaluate_tables(ws, spec, PROFILE_T, DRIFT_T)
        [firing] = scheduler.tick()
        assert firing.job == "retrain" and firing.run_id is not None
        assert scheduler.tick() == []
        assert out.read_text().splitlines() == ["dep_delay_drift:drift"]
        run = scheduler.runner.get(firing.run_id)
        assert run.status == "succeeded"
        # the alert resolving is notified (webhooks, email), but does not retrain
        write_metrics(ws, DRIFT_T, drift_rows([0.4, 0.0]), DRIFT)
        [resolved] = evaluate_tables(ws, spec, PROFILE_T, DRIFT_T)
        assert resolved.state == "resolved" and resolved.event_id is not None
        assert scheduler.tick() == []
        assert out.read_text().splitlines() == ["dep_delay_drift:drift"]
