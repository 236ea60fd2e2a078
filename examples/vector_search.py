"""A vector index over a Delta table: sync it from the change data feed, search it by
meaning, by keyword and both, keep it in step after an update, and roll back a pin.

Run it from any folder: python examples/vector_search.py
"""

from pathlib import Path
from tempfile import mkdtemp

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

import lakeforge
from lakeforge.demo import flights_data_dir

project = lakeforge.init_project("vectors", Path(mkdtemp(prefix="lakeforge-vectors-")))
with (project / "lakeforge.yaml").open("a") as handle:
    handle.write("""
vector_indexes:
  gold.airport_docs_index:
    source: gold.airport_docs        # a Delta table (change data feed on)
    primary_key: doc_id
    text_column: text
    columns: [kind, code]            # metadata for filters and results
    embedding: {model: all-MiniLM-L6-v2}
    full_text: true                  # keyword and hybrid search
""")
ws = lakeforge.connect("dev", project_dir=project)

# Documents: the airlines and the international airports of the flights data.
data = flights_data_dir()
airlines = pacsv.read_csv(data / "airlines.csv")
airports = pacsv.read_csv(data / "airports.csv")
airports = airports.filter(pc.match_substring(airports["name"], "Intl"))
texts = [
    f"{name} is an airline (carrier code {code})"
    for code, name in zip(
        airlines["carrier"].to_pylist(), airlines["name"].to_pylist(), strict=True
    )
]
texts += [
    f"{name} is an airport in {zone.split('/')[-1].replace('_', ' ')}"
    for name, zone in zip(airports["name"].to_pylist(), airports["tzone"].to_pylist(), strict=True)
]
docs = pa.table(
    {
        "doc_id": list(range(len(texts))),
        "text": texts,
        "kind": ["airline"] * airlines.num_rows + ["airport"] * airports.num_rows,
        "code": airlines["carrier"].to_pylist() + airports["faa"].to_pylist(),
    }
)
ws.tables.write("gold.airport_docs", docs)

first = ws.vectors.sync("gold.airport_docs_index")
print(f"first sync: {first.upserted} docs embedded, index version {first.index_version}")

found = ws.vectors.search(
    "gold.airport_docs_index", "a big airport near Chicago", k=3, filter="kind = 'airport'"
)
print("by meaning:", found["code"].to_pylist())
hybrid = ws.vectors.search("gold.airport_docs_index", "Delta airline", k=1, query_type="hybrid")
print("hybrid:", hybrid["text"][0].as_py())

# The source changes; the next sync reads only the change data feed.
source = ws.tables.delta("gold.airport_docs", write=True)
source.delete("kind = 'airline'")
second = ws.vectors.sync("gold.airport_docs_index")
print(f"second sync: {second.upserted} upserted, {second.deleted} deleted")
airline_docs = "kind = 'airline'"
print(
    "airlines now:",
    ws.vectors.search("gold.airport_docs_index", "airline", filter=airline_docs).num_rows,
)

# Serving reads the pinned version: roll back to the first sync's.
ws.vectors.rollback("gold.airport_docs_index")
back = ws.vectors.search("gold.airport_docs_index", "airline", k=20, filter=airline_docs)
print(f"rolled back: search reads the first sync again ({back.num_rows} airline docs)")
