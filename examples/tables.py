"""Delta tables from Python: a primary key, upserts, time travel, restore and the change feed.

Run it from any folder: python examples/tables.py
"""

from pathlib import Path
from tempfile import mkdtemp

import pyarrow as pa

import lakeforge

project = lakeforge.init_project("tables", Path(mkdtemp(prefix="lakeforge-tables-")))
ws = lakeforge.connect("dev", project_dir=project)

ws.tables.create(
    "dev.silver.airlines",
    {"carrier": pa.string(), "name": pa.string()},
    primary_keys=["carrier"],
    comment="Airline names",
)  # version 0
ws.tables.write(
    "dev.silver.airlines", pa.table({"carrier": ["AA", "UA"], "name": ["American", "United"]})
)  # version 1
ws.tables.merge(
    "dev.silver.airlines",
    pa.table({"carrier": ["UA", "ZZ"], "name": ["United Airlines", "Lakeforge Air"]}),
)
print(ws.sql("SELECT * FROM dev.silver.airlines ORDER BY carrier").to_pylist())
print(ws.tables.read("dev.silver.airlines", version=1, format="pandas"))  # time travel
ws.tables.restore("dev.silver.airlines", version=1)  # a new commit
changes = ws.tables.changes("dev.silver.airlines", starting_version=2)  # change data feed
print(changes.select(["carrier", "_change_type", "_commit_version"]).to_pylist())
print([entry["operation"] for entry in ws.tables.history("dev.silver.airlines")])
rows = ws.sql("SELECT count(*) AS n FROM dev.silver.airlines").column("n")[0].as_py()
print(f"restored to version 1: {rows} airlines")
