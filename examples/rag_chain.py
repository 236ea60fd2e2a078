"""A RAG chain as a model: retrieve from a vector index, fill a registered prompt, ask an
LLM; evaluate its retrieval (recall@k, MRR, nDCG@k), log and register it, load it back.

The LLM is a local fake speaking OpenAI's protocol that echoes the prompt, so the answer
shows what the chain retrieved. Point ``base_url`` at ``lakeforge serve``'s gateway
(http://127.0.0.1:8080/v1) or any OpenAI-compatible endpoint for a real one.

Run it from any folder: python examples/rag_chain.py
"""

import os
from pathlib import Path
from tempfile import mkdtemp

import mlflow
import pandas as pd
import pyarrow as pa

import lakeforge
from lakeforge.rag import evaluate_retrieval, log_chain
from lakeforge.testing.fake_openai import FakeOpenAI
from lakeforge.tracking import use_target
from lakeforge.vectors import sync

project = lakeforge.init_project("ragdemo", Path(mkdtemp(prefix="lakeforge-rag-")))
with (project / "lakeforge.yaml").open("a") as handle:
    handle.write("""
vector_indexes:
  gold.notes_index:
    source: gold.notes
    primary_key: note_id
    text_column: text
    embedding: {model: all-MiniLM-L6-v2}
""")
ws = lakeforge.connect("dev", project_dir=project)
notes = [
    "JFK is New York's largest airport, with six terminals in Queens.",
    "Newark Liberty airport, in New Jersey, is a hub for United Airlines.",
    "Summer thunderstorms cause ground stops and long departure delays.",
    "De-icing in winter slows departures from every runway.",
    "JetBlue is based at JFK and flies many routes to the Caribbean.",
    "Long-term parking lots have a shuttle bus to the terminals.",
]
ws.tables.write("gold.notes", pa.table({"note_id": [f"n{i}" for i in range(6)], "text": notes}))
sync(ws, "gold.notes_index")
prompt = ws.prompts.register(
    "prompts.answer", "Answer from these notes only.\n{{context}}\nQuestion: {{question}}"
)
ws.prompts.set_alias("prompts.answer", "production", int(prompt.version))

questions = pd.DataFrame(
    {
        "question": ["Which airport is a United hub?", "Why do flights wait in winter?"],
        "relevant_ids": [["n1"], ["n3"]],
    }
)
with FakeOpenAI() as llm:
    with ws.start_run("rag", autolog=False):
        # the metrics land on the chain's run: deployment policies can gate on them
        scores = evaluate_retrieval(ws, "gold.notes_index", questions, k=(1, 3))
        version = log_chain(
            ws,
            name="rag.airport_help",
            index="gold.notes_index",
            prompt="prompts.answer@production",
            llm={"base_url": llm.url, "model": "chat"},
            k=2,
        )
    print(f"recall@1 {scores.metrics['recall_at_1']:.2f}, mrr {scores.metrics['mrr']:.2f}")
    print(f"registered dev.rag.airport_help v{version.version}, index version "
          f"{version.tags['lakeforge.rag.index_version']}")  # fmt: skip

    # Loaded in a target (as `lakeforge serve` does), it reads that target's index and prompt.
    os.environ["LAKEFORGE_PROJECT_DIR"] = str(project)
    os.environ["LAKEFORGE_TARGET"] = "dev"
    with use_target(ws.target):
        chain = mlflow.pyfunc.load_model(f"models:/dev.rag.airport_help/{version.version}")
        answer = chain.predict(pd.DataFrame({"question": ["Where do United flights connect?"]}))
    print("sources:", list(answer["sources"][0]))
    print("prompt sent:", answer["answer"][0].splitlines()[1])
