"""The README's examples and the demo run for real."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lakeforge

EXAMPLES = Path(__file__).parents[1] / "examples"
# What each example prints last when it worked: every example has its own check.
EXPECTED = {
    "batch_scoring.py": "stream after an append: 1000 new rows",
    "vector_search.py": "rolled back: search reads the first sync again",
    "rag_chain.py": "prompt sent: [n1] Newark Liberty airport, in New Jersey, is a hub for United",
    "deployment.py": "deployed through the manual approval gate",
    "feature_store.py": "scored 5 from keys offline, 5 online",
    "jobs.py": "trigger table_update:dev.silver.orders fired run 2: succeeded",
    "monitoring.py": "alert moves: [('distance_drift', 'ok', 'triggered')]",
    "lakehouse_quickstart.py": "ingested 50000 rows from 1 file(s)",
    "executor_backend.py": "serial passed all 8 executor checks",
    "online_store_backend.py": "memory:// passed all 16 online store checks",
    "tables.py": "restored to version 1: 2 airlines",
    "tracking_registry.py": "registered dev.ml.flight_delay v1, copied as staging.ml.flight_delay v1",
    "tuning.py": "registered dev.ml.late v1 on parent run",
}
# the others train with MLflow or run jobs
FAST = {"lakehouse_quickstart.py", "online_store_backend.py", "tables.py"}


@pytest.mark.parametrize(
    "example",
    [
        pytest.param(path, marks=() if path.name in FAST else pytest.mark.slow, id=path.name)
        for path in sorted(EXAMPLES.glob("*.py"))
    ],
)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    # As a reader runs it: its own process, from another folder, temp files under tmp_path.
    assert example.name in EXPECTED, f"add the line {example.name} prints when it works to EXPECTED"
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"},
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert EXPECTED[example.name] in done.stdout, done.stdout[-4000:]


@pytest.mark.slow
# The demo takes about 2 minutes on an idle 2-core machine; a loaded one may need several times that.
@pytest.mark.timeout(1500)
def test_demo_walks_the_lakehouse_on_real_flights(tmp_path: Path) -> None:
    # `lakeforge demo`, as `make demo` runs it, over what a previous run left: it starts afresh.
    demo_dir = tmp_path / "demo"
    (demo_dir / "flights").mkdir(parents=True)
    (demo_dir / "flights" / "left-by-a-previous-run").write_text("stale")
    done = subprocess.run(
        [sys.executable, "-m", "lakeforge", "demo", "--dir", str(demo_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert not (demo_dir / "flights" / "left-by-a-previous-run").exists()
    ws = lakeforge.connect("dev", project_dir=demo_dir / "flights")
    assert "+6 file(s), +166,158 rows" in text
    assert "+6 file(s), +170,618 rows, 6 already ingested, 1 failed" in text
    assert "+0 file(s), +0 rows, 12 already ingested, 1 failed" in text
    assert "9,430 quarantined" in text
    assert (
        ws.sql("SELECT sum(flights) AS n FROM dev.gold.carrier_delays").column("n")[0].as_py()
        == 327_346
    )
    # training, registry, deployment through dev's policy, copy to staging
    assert "registered dev.ml.flight_delay v1" in text
    assert "validation pass: lineage" in text and "deployment: " in text
    assert "copied to staging as staging.ml.flight_delay v1" in text
    # prod's manual gate: a direct champion move refused, then a second person approves
    assert "ada moves champion directly -> refused: prod.ml.flight_delay@champion is gated" in text
    assert "lakeforge -t prod approvals approve 1" in text
    assert "approved by grace: prod.ml.flight_delay v1 is prod's champion" in text
    lineage = ws.models.lineage("dev.ml.flight_delay/1")
    assert lineage.commit and lineage.data_versions == {"dev.silver.flights": 0}
    assert "alias.moved" in text and "model_version.created" in text
    # jobs: deployed with a development-mode name, run, and fired again by a table update
    assert '+ job refresh_gold as "[dev ' in text
    assert "task values {'carriers': 16}" in text
    assert "trigger table_update:dev.silver.airlines fired run 2: succeeded" in text
    # feature store: point-in-time training, online scoring equal to point-in-time
    assert "same as point-in-time at the newest rows" in text
    # serving: keys in, a clear 400, a hot swap without failures, the inference table
    assert "keys only -> weather looked up online -> 200" in text
    assert "a request without its keys -> 400: Model is missing inputs ['origin']" in text
    assert "swapped while serving" in text and " 0 failed" in text
    log = ws.sql(
        "SELECT model_version, count(*) AS n FROM dev.serving.departure_delay_requests "
        "GROUP BY 1 ORDER BY 1"
    ).to_pylist()
    assert [row["model_version"] for row in log] == ["1", "2"]
    # batch scoring (a rerun adds nothing) and a stream that saw every December flight once
    assert "the same run again: 0 new rows" in text
    december = "SELECT count(*) AS n FROM dev.silver.flights WHERE month = 12"
    streamed = """SELECT count(*) AS n, count(DISTINCT (carrier, flight, origin, time_hour)) AS k
                  FROM dev.gold.late_predictions_stream"""
    total = ws.sql(december).column("n")[0].as_py()
    assert ws.sql(streamed).to_pylist() == [{"n": total, "k": total}]
    # monitoring: metric tables, an alert that starts the retraining job, the reports
    assert "alert dataset_drift: ok -> triggered" in text
    assert "started job retrain run 3: succeeded" in text
    for name in ("flights", "departure_delay"):
        assert (demo_dir / "flights" / f"monitor_{name}.html").stat().st_size > 1000
    # LLM gateway: a released prompt, retries, every request in Delta with tokens and cost
    # (step 11's users; the RAG chain of step 12 calls the same endpoint without one)
    assert "a provider 503 is retried: the client gets chat.completion" in text
    logged = ws.sql(
        "SELECT count(*) AS n, count(DISTINCT prompt) AS prompts, min(prompt) AS prompt, "
        "bool_and(cost > 0) AS costed FROM dev.serving.assistant_requests "
        'WHERE "user" IS NOT NULL'
    ).to_pylist()
    assert logged == [
        {"n": 10, "prompts": 1, "prompt": "dev.prompts.flight_help/2", "costed": True}
    ]
    chain_calls = 'SELECT count(*) AS n FROM dev.serving.assistant_requests WHERE "user" IS NULL'
    assert ws.sql(chain_calls).column("n")[0].as_py() >= 2  # logging the chain, then serving
    # vector search kept in step with its table, and a RAG chain served over the gateway
    assert "documents of dev.gold.travel_docs embedded" in text
    assert "1 upserted, 1 deleted" in text
    found = ws.vectors.search("gold.travel_docs_index", "a big airport near Chicago", k=3)
    assert "ORD" in found["code"].to_pylist()
    assert (
        "airline-OO"
        not in ws.vectors.search("gold.travel_docs_index", "SkyWest", k=5)["doc_id"].to_pylist()
    )
    assert "'airline-B6'" in text and "recall@3" in text
