"""The lakehouse from Python: ingest raw files, write silver through expectations, query with SQL.

Run it from any folder: python examples/lakehouse_quickstart.py
"""

from pathlib import Path
from tempfile import mkdtemp

import pyarrow.csv as pacsv

import lakeforge
from lakeforge import expect, expect_or_drop
from lakeforge.demo import load_flights

workdir = Path(mkdtemp(prefix="lakeforge-quickstart-"))
project = lakeforge.init_project("quickstart", workdir)
ws = lakeforge.connect("dev", project_dir=project)

# Raw files land in a folder; ingest loads each new file exactly once.
landing = workdir / "landing"
landing.mkdir()
pacsv.write_csv(load_flights().slice(0, 50_000), landing / "flights_part1.csv")
report = ws.ingest(landing, "dev.bronze.flights")
print(f"ingested {report.rows} rows from {len(report.loaded)} file(s)")

# Silver: rows that fail an expect_or_drop rule go to dev.silver.flights_quarantine.
bronze = ws.tables.read("dev.bronze.flights")
result = ws.tables.write(
    "dev.silver.flights",
    bronze,
    mode="overwrite",
    expectations=[
        expect_or_drop("flew", "dep_time IS NOT NULL"),
        expect("short_delay", "arr_delay < 120"),
    ],
)
print(f"silver: {result.rows_written} rows written, {result.rows_dropped} quarantined")

# SQL over Delta tables, with time travel (@v0 is the first version).
top = ws.sql("""
    SELECT origin, count(*) AS flights, round(avg(dep_delay), 1) AS avg_dep_delay
    FROM dev.silver.flights GROUP BY origin ORDER BY flights DESC
""")
print(top.to_pandas().to_string(index=False))
print(ws.sql("SELECT count(*) AS n FROM dev.bronze.flights@v0").to_pylist())
