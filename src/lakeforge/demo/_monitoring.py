"""Step 10: monitors on the flights (month by month) and on the endpoint's inference
table, an alert that starts the retraining job, and the HTML reports."""

from __future__ import annotations

from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace
from lakeforge.demo._data import show

DEMO_MONITORS = """
monitors:
  flights:
    table: silver.flights
    profile: time_series
    timestamp_col: time_hour
    granularities: ["1 month"]
    columns: [dep_delay, arr_delay, distance, air_time, carrier, origin]
    baseline_table: gold.flights_baseline
    drift_min_count: 1000
    alerts:
      - name: dataset_drift             # a third of the columns drift in 2 of 3 months
        metric: drift_share
        comparator: ">="
        threshold: 0.3
        windows: 2 of last 3
        channels: [log, events]
        action: {job: retrain, parameters: {reason: drift}}
"""
DEMO_RETRAIN_JOB = """
  retrain:
    description: Retrain when the flights monitor raises an alert
    triggers:
      - {type: monitor_alert, monitors: [flights]}
    tasks:
      - key: retrain
        python: pipelines:retrain
        parameters: {reason: "{{trigger.event.payload.action.parameters.reason}}"}
"""
DEMO_RETRAIN_TASK = '''

def retrain(reason: str) -> dict:
    """Stands in for the training pipeline, which a monitor alert starts."""
    print(f"retraining requested: {reason}")
    return {"reason": reason}
'''


def monitor(ws: Workspace, console: Console) -> None:
    """Refresh both monitors, show the drift and the alert, write the reports."""
    from lakeforge.jobs import JobRunner, Scheduler
    from lakeforge.monitoring import refresh, write_report

    console.print(Rule("10. Monitoring: drift and quality tables, an alert, retraining"))
    scheduler = Scheduler(ws, background=False)
    scheduler.tick()  # the scheduler starts watching the outbox from here
    ws.sql(
        "CREATE OR REPLACE TABLE dev.gold.flights_baseline AS "
        "SELECT * FROM dev.silver.flights WHERE month <= 3",
        read_only=False,
    )
    result = refresh(ws, "flights")
    profile, drift = result.tables
    console.print(
        f"  monitor flights: {len(result.windows)} monthly windows from {result.rows_read:,} "
        f"rows against January-March (the baseline, summarised once) into {profile} and {drift}"
    )
    show(
        console,
        ws,
        "Drift from the baseline, month by month (Evidently's tests and thresholds)",
        f"""
        SELECT strftime(d.window_start, '%Y-%m') AS month, any_value(p.count) AS flights,
               string_agg(d.column_name || ' ' || d.drift_method || ' ' || round(d.drift_score, 2),
                          ', ' ORDER BY d.column_name) FILTER (d.drift_detected) AS drifted,
               round(max(d.drift_share), 2) AS drift_share
        FROM {drift} d JOIN {profile} p ON p.window_start = d.window_start
          AND p.column_name = ':table' AND p.slice_key IS NULL AND p.log_type = 'INPUT'
        WHERE d.drift_type = 'BASELINE' AND d.slice_key IS NULL
        GROUP BY ALL ORDER BY month""",
        rows=13,
    )
    console.print(
        "  (2014-01 holds the last hours of 31 December, the windows being calendar months in "
        "UTC: with fewer than drift_min_count = 1000 flights it gets statistics, no verdict)"
    )
    for move in result.alerts:
        console.print(
            f"  alert {move.rule}: {move.previous} -> {move.state} "
            f"({move.metric} {move.value if move.value is None else round(move.value, 2)} "
            f"{move.comparator} {move.threshold})"
        )
    for firing in scheduler.tick():
        run = JobRunner(ws).get(firing.run_id or 0)
        console.print(
            f"  trigger {firing.trigger} started job {run.job} run {run.id}: {run.status}"
        )
    scheduler.release()
    endpoint = refresh(ws, "departure_delay")
    profile, _ = endpoint.tables
    show(
        console,
        ws,
        "The endpoint's inference table, monitored: serving health and predictions per version",
        f"""
        SELECT model_version, request_count, round(error_rate, 3) AS error_rate,
               round(latency_p50_ms, 1) AS p50_ms, round(latency_p99_ms, 1) AS p99_ms
        FROM {profile} WHERE column_name = ':table' AND slice_key IS NULL
          AND request_count IS NOT NULL ORDER BY model_version""",
    )
    for name in ("flights", "departure_delay"):
        path = write_report(ws, name, ws.project.directory / f"monitor_{name}.html")
        console.print(f"  report (one HTML file, works offline): {path}")
