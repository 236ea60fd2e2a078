"""Alert rules: validation, N of the last M windows, and state moves notified exactly once."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

import lakeforge
from lakeforge import Workspace
from lakeforge.events import MONITOR_ALERT, Outbox
from lakeforge.monitoring._alerts import (
    alert_history,
    alert_states,
    check_rule,
    evaluate,
    evaluate_tables,
)
from lakeforge.project import AlertRule, MonitorSpec, SmtpConfig
from tests.monitoring.alert_helpers import DRIFT, PROFILE, drift_rows, profile_rows, write_metrics

PROFILE_T, DRIFT_T = "dev.mon.flights_profile_metrics", "dev.mon.flights_drift_metrics"


def rule(**fields: object) -> AlertRule:
    base: dict[str, object] = {
        "name": "dep_delay_drift",
        "metric": "drift_score",
        "column_name": "dep_delay",
        "comparator": ">=",
        "threshold": 0.1,
    }
    return AlertRule.model_validate({**base, **fields})


def monitor(*rules: AlertRule) -> MonitorSpec:
    return MonitorSpec(name="flights", table="silver.flights", alerts=list(rules))


def events(ws: Workspace) -> list[dict[str, object]]:
    return [e.payload for e in Outbox(ws.state).list(type=MONITOR_ALERT)]


# -- the spec -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metric": "made_up"}, "not a standard metric; say which table"),
        ({"windows": "3 of last 2"}, "3 of the last 2 can never happen"),
        ({"windows": "most of them"}, "is not 'N of last M'"),
        ({"comparator": "=>"}, "comparator"),
        ({"channels": ["log", "email"], "email": ["a@b.io"]}, "list 'events' in channels too"),
        ({"channels": ["log", "events", "email"]}, "needs recipients"),
        ({"email": ["ops@example.com"]}, "'email' is not a channel"),
        ({"channels": ["log", "events", "email"], "email": ["x\n@y.z"]}, "not an email address"),
        ({"channels": ["sms"]}, "channels"),
        ({"metric": "count", "drift_type": "BASELINE"}, "drift_type applies to drift metrics"),
        ({"metric": "count", "table": "drift"}, "in the other metrics table"),
        ({"name": "bad name"}, "alert name 'bad name' is not valid"),
        ({"granularity": "2 days"}, "granularity '2 days' is not allowed"),
        ({"action": {"job": "retrain"}, "channels": ["log"]}, "runs through the monitor.alert"),
    ],
)
def test_bad_rules_are_refused_with_a_clear_error(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


def test_rule_defaults_and_parsing() -> None:
    drift = rule(windows="2 of last 3")
    assert (drift.table, drift.drift_type, drift.windows.n, drift.windows.m) == (
        "drift",
        "BASELINE",
        2,
        3,
    )
    assert str(drift.windows) == "2 of last 3" and rule(windows=2).windows.m == 2
    assert rule(metric="accuracy_score", column_name=":table").table == "profile"
    assert rule(metric="late_share", table="profile").drift_type is None
    smtp = SmtpConfig.model_validate({"host": "127.0.0.1", "from": "lf@example.com"})
    assert smtp.sender == "lf@example.com" and smtp.port == 25
    with pytest.raises(ValidationError, match="not an environment variable name"):
        SmtpConfig.model_validate(
            {"host": "h", "from": "a@b.io", "username": "u", "password_env": "s3cr3t!"}
        )
    # the monitor spec takes rules from lakeforge.yaml-shaped dicts
    spec = MonitorSpec.model_validate(
        {
            "table": "silver.flights",
            "alerts": [{"name": "a", "metric": "count", "comparator": "<", "threshold": 1}],
        }
    )
    assert spec.alerts[0].table == "profile"


# -- evaluation -----------------------------------------------------------------------------


def test_n_of_the_last_m_windows() -> None:
    table = pa.Table.from_pylist(drift_rows([0.3, 0.0, 0.2, 0.05, 0.15]), schema=DRIFT)
    verdict = check_rule(rule(windows="2 of last 3"), table)
    assert verdict is not None
    assert (verdict.breached, verdict.breaches, verdict.windows, verdict.value) == (
        True,
        2,
        3,
        0.15,
    )
    assert check_rule(rule(windows="3 of last 3"), table).breached is False  # type: ignore[union-attr]
    assert check_rule(rule(windows="1 of last 1", comparator="<"), table).breached is False  # type: ignore[union-attr]
    # nulls never breach; fewer windows than M still need N breaches
    nulls = pa.Table.from_pylist(drift_rows([None, 0.5]), schema=DRIFT)
    assert check_rule(rule(windows="2 of last 5"), nulls).breached is False  # type: ignore[union-attr]
    # a window with no value (no verdict: too few rows) is not one of the last M
    gap = pa.Table.from_pylist(drift_rows([0.3, 0.2, None]), schema=DRIFT)
    held = check_rule(rule(windows="2 of last 2"), gap)
    assert held is not None and (held.breached, held.windows, held.value) == (True, 2, 0.2)
    assert check_rule(rule(), pa.Table.from_pylist(drift_rows([None]), schema=DRIFT)) is None
    # another column, slice, drift type or granularity does not count
    others = (
        drift_rows([0.9], column="distance")
        + drift_rows([0.9], slice_=("origin", "JFK"))
        + drift_rows([0.9], drift_type="CONSECUTIVE")
        + drift_rows([0.9], granularity="1 week")
        + drift_rows([0.0])
    )
    table = pa.Table.from_pylist(others, schema=DRIFT)
    assert check_rule(rule(), table).breached is False  # type: ignore[union-attr]
    assert check_rule(rule(slice={"key": "origin", "value": "JFK"}), table).breached is True  # type: ignore[union-attr]
    assert check_rule(rule(drift_type="CONSECUTIVE"), table).breached is True  # type: ignore[union-attr]
    assert check_rule(rule(granularity="1 week"), table).breached is True  # type: ignore[union-attr]
    assert (
        check_rule(rule(metric="drift_detected", comparator="==", threshold=1), table).breached
        is False
    )  # type: ignore[union-attr]
    assert check_rule(rule(column_name="nothing"), table) is None
    with pytest.raises(lakeforge.LakeforgeError, match="no column 'ks_pvalue'"):
        check_rule(rule(metric="ks_pvalue"), table)
    with pytest.raises(lakeforge.LakeforgeError, match="no '1 month' windows"):
        check_rule(rule(granularity="1 month"), table)


def test_state_moves_ok_triggered_resolved_with_one_event_each(ws: Workspace) -> None:
    spec = monitor(
        rule(windows="2 of last 3"),
        rule(
            name="accuracy",
            metric="accuracy_score",
            column_name=":table",
            comparator="<",
            threshold=0.8,
            channels=["log"],
        ),
    )
    write_metrics(ws, PROFILE_T, profile_rows([0.9, 0.9]), PROFILE)
    write_metrics(ws, DRIFT_T, drift_rows([0.0, 0.0]), DRIFT)
    assert evaluate_tables(ws, spec, PROFILE_T, DRIFT_T) == []
    assert [s.state for s in alert_states(ws, "flights")] == ["ok", "ok"]

    write_metrics(ws, DRIFT_T, drift_rows([0.0, 0.0, 0.2]), DRIFT)  # 1 of 3: not yet
    assert evaluate_tables(ws, spec, PROFILE_T, DRIFT_T) == []
    write_metrics(ws, DRIFT_T, drift_rows([0.0, 0.0, 0.2, 0.3]), DRIFT)
    write_metrics(ws, PROFILE_T, profile_rows([0.9, 0.9, 0.5]), PROFILE)
    moved = evaluate_tables(ws, spec, PROFILE_T, DRIFT_T)
    assert sorted((t.rule, t.previous, t.state) for t in moved) == [
        ("accuracy", "ok", "triggered"),
        ("dep_delay_drift", "ok", "triggered"),
    ]
    [event] = events(ws)  # the accuracy rule only logs
    assert (
        event["state"] == "triggered" and event["value"] == 0.3 and event["window"] == "2 of last 3"
    )
    assert event["dedupe_key"] == "flights/dep_delay_drift/1"
    # evaluating the same metrics again moves nothing and notifies nobody
    assert evaluate_tables(ws, spec, PROFILE_T, DRIFT_T) == []
    assert len(events(ws)) == 1
    # recovery: resolved once, then triggered again by a new shift
    write_metrics(ws, DRIFT_T, drift_rows([0.0, 0.0, 0.2, 0.3, 0.0, 0.0]), DRIFT)
    [resolved] = evaluate_tables(ws, spec, PROFILE_T, DRIFT_T)
    assert (resolved.previous, resolved.state, resolved.seq) == ("triggered", "resolved", 2)
    assert evaluate_tables(ws, spec, PROFILE_T, DRIFT_T) == []
    write_metrics(ws, DRIFT_T, drift_rows([0.0, 0.0, 0.2, 0.3, 0.0, 0.0, 0.4, 0.5]), DRIFT)
    [again] = evaluate_tables(ws, spec, PROFILE_T, DRIFT_T)
    assert (again.previous, again.state, again.seq) == ("resolved", "triggered", 3)
    assert [e["state"] for e in events(ws)] == ["triggered", "resolved", "triggered"]
    history = alert_history(ws, "flights")
    assert [(h.rule, h.state) for h in history] == [
        ("dep_delay_drift", "triggered"),
        ("accuracy", "triggered"),
        ("dep_delay_drift", "resolved"),
        ("dep_delay_drift", "triggered"),
    ]
    drift_history = [h for h in history if h.rule == "dep_delay_drift"]
    assert all(h.event_id is not None for h in drift_history)
    assert [h.event_id for h in history if h.rule == "accuracy"] == [None]
    assert alert_history(ws, "other") == []


def test_evaluate_reads_the_tables_a_refresh_wrote(ws: Workspace) -> None:
    class Result:
        tables = (PROFILE_T, DRIFT_T)

    write_metrics(ws, DRIFT_T, drift_rows([0.5]), DRIFT)
    [moved] = evaluate(ws, monitor(rule()), Result())
    assert moved.state == "triggered" and moved.event_id is not None

    # a monitor whose tables do not exist yet has nothing to evaluate
    class Nothing:
        tables = ("dev.mon.none_profile_metrics", "dev.mon.none_drift_metrics")

    assert evaluate(ws, monitor(rule(name="other")), Nothing()) == []


def test_concurrent_evaluations_notify_once(project_dir: Path) -> None:
    """Eight workspaces (own engines) evaluate the same move at once: one event, one history row."""
    spec = monitor(rule())
    with lakeforge.connect("dev", project_dir=project_dir) as ws:
        write_metrics(ws, PROFILE_T, profile_rows([0.9]), PROFILE)
        write_metrics(ws, DRIFT_T, drift_rows([0.5]), DRIFT)
        ws.state.migrate()
    start = threading.Barrier(8)
    moved: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with lakeforge.connect("dev", project_dir=project_dir) as mine:
                mine.state.migrate()
                start.wait()
                moved.append(len(evaluate_tables(mine, spec, PROFILE_T, DRIFT_T)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(moved) == [0] * 7 + [1]
    with lakeforge.connect("dev", project_dir=project_dir) as ws:
        assert len(events(ws)) == 1
        assert [h.seq for h in alert_history(ws)] == [1]


def test_log_channel(ws: Workspace, caplog: pytest.LogCaptureFixture) -> None:
    write_metrics(ws, DRIFT_T, drift_rows([0.5]), DRIFT)
    with caplog.at_level("INFO", logger="lakeforge.monitoring.alerts"):
        evaluate_tables(ws, monitor(rule(channels=["log"])), PROFILE_T, DRIFT_T)
    assert "monitor flights: alert dep_delay_drift triggered" in caplog.text
    assert events(ws) == []  # not an events channel


def test_duplicate_rule_names_are_refused(ws: Workspace) -> None:
    write_metrics(ws, DRIFT_T, drift_rows([0.5]), DRIFT)
    with pytest.raises(lakeforge.LakeforgeError, match="alert names repeat: dep_delay_drift"):
        evaluate_tables(ws, monitor(rule(), rule()), PROFILE_T, DRIFT_T)
