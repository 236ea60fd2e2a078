"""Monitor a table month by month: drift against a baseline, an alert, an HTML report.

Run it from any folder: python examples/monitoring.py
"""

from pathlib import Path
from tempfile import mkdtemp

import pyarrow.compute as pc

import lakeforge
from lakeforge.demo import load_flights
from lakeforge.monitoring import create_monitor, refresh, set_baseline, write_report
from lakeforge.project import AlertRule, MonitorSpec

workdir = Path(mkdtemp(prefix="lakeforge-monitoring-"))
project = lakeforge.init_project("monitoring", workdir)
ws = lakeforge.connect("dev", project_dir=project)
flights = load_flights().select(["time_hour", "origin", "dep_delay", "distance", "air_time"])
month = pc.month(flights["time_hour"])  # calendar months in UTC, as the windows are
first_half = flights.filter(
    pc.and_(pc.less_equal(month, 6), pc.equal(pc.year(flights["time_hour"]), 2013))
)
ws.tables.write("dev.gold.flights_baseline", first_half)  # e.g. the training set
ws.tables.write("dev.silver.flights", first_half)

monitor = MonitorSpec(
    name="flights",
    table="dev.silver.flights",
    profile="time_series",
    timestamp_col="time_hour",
    granularities=["1 month"],
    slicing_exprs=["origin"],
    baseline_table="dev.gold.flights_baseline",
    alerts=[
        AlertRule(
            name="distance_drift",
            metric="drift_detected",
            column_name="distance",
            comparator="==",
            threshold=1,
            channels=["log", "events"],  # events: webhooks and monitor_alert job triggers
        )
    ],
)
create_monitor(ws, monitor)
set_baseline(ws, "flights")  # baseline statistics are computed once, here
result = refresh(ws, "flights")
print(f"refreshed {len(result.windows)} monthly windows from {result.rows_read} rows")

# July arrives with a shift: every flight is 30 % longer.
july = flights.filter(pc.equal(month, 7))
july = july.set_column(3, "distance", pc.divide(pc.multiply(july["distance"], 13), 10))
ws.tables.write("dev.silver.flights", july)
result = refresh(ws, "flights")  # reads only the new rows (change data feed)
profile, drift = result.tables
shifted = ws.sql(
    f"SELECT column_name, drift_method, round(drift_score, 3) AS score FROM {drift} "
    "WHERE drift_type = 'BASELINE' AND drift_detected AND slice_key IS NULL "
    "AND window_start = TIMESTAMPTZ '2013-07-01 00:00:00+00' ORDER BY column_name"
).to_pylist()
print(f"July drifted from the baseline: {shifted}")
print(f"alert moves: {[(a.rule, a.previous, a.state) for a in result.alerts]}")
report = write_report(ws, "flights", workdir / "flights_monitor.html")
print(f"report written: {report.name}")
