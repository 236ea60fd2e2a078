"""Step 12: a vector index over documents written from the flights data, kept in step with
its Delta table, and a RAG chain served as a model that retrieves, fills a registered
prompt and asks the gateway's LLM endpoint (over the local fake provider)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace, connect
from lakeforge.demo._data import show, start_lakeforge
from lakeforge.demo._llm import KEY_ENV, LOG_TABLE, _post
from lakeforge.errors import LakeforgeError

INDEX = "gold.travel_docs_index"
CHAIN = "rag.travel_help"
PROMPT = "prompts.travel_answer"
# One document per destination airport and per airline, written from the 2013 flights.
DOCS_SQL = """CREATE OR REPLACE TABLE dev.gold.travel_docs AS
WITH routes AS (
    SELECT dest, count(*) AS flights, round(avg(arr_delay), 1) AS avg_delay,
           CAST(round(100 * avg(CASE WHEN arr_delay > 15 THEN 1 ELSE 0 END)) AS INTEGER)
               AS late_pct,
           CAST(round(avg(distance)) AS INTEGER) AS miles,
           string_agg(DISTINCT origin, ', ' ORDER BY origin) AS origins,
           mode(carrier) AS top_carrier
    FROM dev.silver.flights GROUP BY dest
)
SELECT 'airport-' || a.faa AS doc_id, 'airport' AS kind, a.faa AS code,
       a.name || ' (' || a.faa || ') is an airport in the ' || a.tzone || ' time zone. '
       || 'In 2013 it received ' || format('{:,}', r.flights) || ' flights from New York ('
       || r.origins || '), ' || format('{:,}', r.miles) || ' miles away; the busiest airline '
       || 'on the route was ' || rtrim(coalesce(l.name, r.top_carrier), '.') || '. Flights '
       || 'arrived ' || r.avg_delay || ' minutes late on average and ' || r.late_pct
       || '% were more than 15 minutes late.' AS text
FROM routes r JOIN dev.bronze.airports a ON a.faa = r.dest
LEFT JOIN dev.silver.airlines l ON l.carrier = r.top_carrier
UNION ALL
SELECT 'airline-' || carrier, 'airline', carrier,
       rtrim(name, '.') || ' (' || carrier || ') flew ' || format('{:,}', flights)
       || ' flights from New York in 2013; they arrived ' || avg_arr_delay
       || ' minutes late on average and ' || CAST(round(100 * late_share) AS INTEGER)
       || '% were more than 15 minutes late.'
FROM dev.gold.carrier_delays"""
INDEX_YAML = """
vector_indexes:
  gold.travel_docs_index:
    source: gold.travel_docs          # the Delta table; its change data feed drives syncs
    primary_key: doc_id
    text_column: text
    columns: [kind, code]
    embedding: {model: all-MiniLM-L6-v2}
    full_text: true                   # keyword and hybrid search
"""
ORD_UPDATE = (
    "Chicago Ohare Intl (ORD) is an airport in the America/Chicago time zone. Update for "
    "winter: de-icing and a runway closure add about 20 minutes to arrivals from New York."
)
QUESTIONS = {
    "Which Chicago airport gets flights from New York?": ["airport-ORD", "airport-MDW"],
    "Which airline had the worst delays?": ["airline-F9"],
    "How late were JetBlue flights?": ["airline-B6"],
    "Tell me about flights to Honolulu": ["airport-HNL"],
    "Which airport in Denver is served from New York?": ["airport-DEN"],
}


def vector_search(ws: Workspace, console: Console) -> None:
    """Build, search, update and sync the index; log, evaluate and serve the chain."""
    console.print(Rule("12. Vector search synced from Delta, and a RAG chain served as a model"))
    ws.sql(DOCS_SQL, read_only=False)
    with (ws.project.directory / "lakeforge.yaml").open("a") as handle:
        handle.write(INDEX_YAML)
    with connect("dev", project_dir=ws.project.directory) as fresh:  # reads the new index
        first = fresh.vectors.sync(INDEX)
        console.print(
            f"  {INDEX}: {first.upserted} documents of dev.gold.travel_docs embedded with "
            f"all-MiniLM-L6-v2 (LanceDB version {first.index_version}, Delta version "
            f"{first.delta_version})"
        )
        question = "Which Chicago airport gets flights from New York?"
        _hits(console, f"by meaning: {question!r}", fresh.vectors.search(INDEX, question, k=3))
        _hits(
            console,
            "hybrid (keyword + meaning) over airlines: 'JetBlue delays'",
            fresh.vectors.search(
                INDEX, "JetBlue delays", k=2, query_type="hybrid", filter="kind = 'airline'"
            ),
        )
        fresh.tables.merge(
            "dev.gold.travel_docs",
            pa.table(
                {
                    "doc_id": ["airport-ORD"],
                    "kind": ["airport"],
                    "code": ["ORD"],
                    "text": [ORD_UPDATE],
                }
            ),
            keys=["doc_id"],
        )
        fresh.tables.delete("dev.gold.travel_docs", "doc_id = 'airline-OO'")
        second = fresh.vectors.sync(INDEX)
        console.print(
            f"  the table changes (ORD's document updated, SkyWest's deleted); the next sync "
            f"reads only the change data feed: {second.upserted} upserted, {second.deleted} "
            f"deleted (Delta version {second.delta_version})"
        )
        _hits(
            console,
            "'winter delays in Chicago'",
            fresh.vectors.search(INDEX, "winter delays in Chicago", k=1),
        )
        _chain(fresh, console)


def _hits(console: Console, title: str, found: pa.Table) -> None:
    console.print(f"  {title}")
    for code, score, text in zip(
        found["code"].to_pylist(),
        found["score"].to_pylist(),
        found["text"].to_pylist(),
        strict=True,
    ):
        console.print(f"    {code:<4} {score:6.3f}  {text[:90]}...", markup=False, highlight=False)


def _chain(ws: Workspace, console: Console) -> None:
    """Evaluate retrieval and log the chain on one run, then serve it: the chain's endpoint
    asks the gateway's LLM endpoint, which asks the fake provider step 11 declared."""
    from lakeforge.rag import evaluate_retrieval, log_chain

    ws.prompts.register(
        PROMPT,
        "Answer in one sentence from these documents only.\n{{context}}\nQuestion: {{question}}",
    )
    ws.prompts.set_alias(PROMPT, "production", 1)
    questions = pa.table({"question": list(QUESTIONS), "relevant_ids": list(QUESTIONS.values())})
    env = {**os.environ, KEY_ENV: "sk-demo-not-a-real-key"}
    servers: list[subprocess.Popen[bytes]] = []
    try:
        gateway = _start(ws, "serve_gateway.log", ["-e", "flight_assistant"], env, servers)
        with ws.start_run("rag", autolog=False):
            scores = evaluate_retrieval(ws, INDEX, questions, k=(1, 3), query_type="hybrid")
            version = log_chain(
                ws,
                name=CHAIN,
                index=INDEX,
                prompt=f"{PROMPT}@production",
                llm={"base_url": f"{gateway}/v1", "model": "flight_assistant"},
                k=3,
                query_type="hybrid",
            )
        metrics = scores.metrics
        console.print(
            f"  chain {ws.tracking.model_name(CHAIN)} v{version.version}: 3 documents from "
            f"{INDEX} (hybrid) -> {PROMPT}@production -> the gateway's flight_assistant endpoint. "
            f"Retrieval on {len(QUESTIONS)} labelled questions (metrics on its run, for "
            f"deployment gates): recall@3 {metrics['recall_at_3']:.2f}, MRR "
            f"{metrics['mrr']:.2f}, nDCG@3 {metrics['ndcg_at_3']:.2f}"
        )
        ws.models.set_alias(CHAIN, "champion", int(version.version))
        served = _start(ws, "serve_rag.log", ["--model", f"{CHAIN}@champion"], env, servers)
        asked = "How late were JetBlue flights?"
        answer = _post(
            f"{served}/serving-endpoints/travel_help/invocations",
            {"dataframe_records": [{"question": asked}]},
        )
        row: dict[str, Any] = answer["predictions"][0]
        console.print(
            f"  POST /serving-endpoints/travel_help/invocations {asked!r}: sources "
            f"{list(row['sources'])}; the fake LLM echoes the prompt it was sent:"
        )
        for line in str(row["answer"]).splitlines()[:3]:
            console.print(f"    {line[:110]}", markup=False, highlight=False)
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)  # the gateway drains, then flushes its log
        for server in servers:
            server.wait(timeout=60)
    show(
        console,
        ws,
        "The chain's LLM calls, in the gateway's request log",
        f"""
        SELECT route, prompt, status_code, input_tokens, output_tokens
        FROM {LOG_TABLE} ORDER BY timestamp_ms DESC LIMIT 2""",
    )


def _start(
    ws: Workspace,
    log: str,
    args: list[str],
    env: dict[str, str],
    servers: list[subprocess.Popen[bytes]],
) -> str:
    """``lakeforge serve ARGS`` on a free port, added to ``servers``; its URL once healthy."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_lakeforge(
        ws, log, "serve", *args, "--port", str(port), "--workers", "1", env=env
    )
    servers.append(server)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as answer:
                if answer.status == 200:
                    return url
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            text = (ws.project.directory / log).read_text()
            raise LakeforgeError(f"`lakeforge serve` did not start: {text[-2000:]}")
        time.sleep(0.3)
