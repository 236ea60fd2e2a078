"""A project with a real vector index (MiniLM embeddings) over airport notes, a prompt and a
fake LLM: shared by the RAG tests (one model load, one sync per target)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import lakeforge
from lakeforge._workspace import Workspace
from lakeforge.testing.fake_openai import FakeOpenAI
from tests.conftest import git_init

INDEX = "gold.notes_index"
PROMPT = "prompts.rag_answer"
TEMPLATE = "Answer from the notes only.\nNotes:\n{{context}}\nQuestion: {{question}}"
VECTORS = """
vector_indexes:
  gold.notes_index:
    source: gold.notes
    primary_key: doc_id
    text_column: text
    columns: [kind]
    embedding: {model: all-MiniLM-L6-v2}
    index: {type: none}
    full_text: true
"""
POLICY = "checks: {signature: true, lineage: true, metrics: {recall_at_5: {min: 0.8}}}"

NOTES = [
    ("n01", "airport", "JFK is New York's largest airport, in Queens, with six terminals."),
    ("n02", "airport", "LaGuardia airport sits on Flushing Bay and serves domestic flights."),
    ("n03", "airport", "Newark Liberty airport is in New Jersey, a hub for United Airlines."),
    ("n04", "weather", "Thunderstorms in summer afternoons cause ground stops and long delays."),
    ("n05", "weather", "Snow and de-icing in winter slow departures from every runway."),
    ("n06", "airline", "Delta Air Lines runs a large operation at JFK terminal four."),
    ("n07", "airline", "JetBlue is based at JFK and flies many routes to the Caribbean."),
    ("n08", "ops", "Baggage handlers load suitcases into the cargo hold before boarding."),
    ("n09", "ops", "Air traffic control spaces arrivals when visibility is poor due to fog."),
    ("n10", "ops", "Fuel trucks refuel aircraft at the gate between flights."),
    ("n11", "food", "Travelers can buy coffee, bagels and pizza in the food courts."),
    ("n12", "parking", "Long-term parking lots offer a shuttle bus to the terminals."),
]
QUESTIONS = [
    ("Which airport is a hub for United Airlines?", ["n03"]),
    ("Why are flights delayed by summer storms?", ["n04"]),
    ("Where can I get something to eat at the airport?", ["n11"]),
    ("Which airline is based at JFK?", ["n07", "n06"]),
    ("How do I get from the parking lot to the terminal?", ["n12"]),
    ("What slows planes down in winter snow?", ["n05"]),
]


def notes_table(rows: list[tuple[str, str, str]] = NOTES) -> pa.Table:
    ids, kinds, texts = (list(c) for c in zip(*rows, strict=True))
    return pa.table({"doc_id": ids, "kind": kinds, "text": texts})


def questions_table() -> pa.Table:
    return pa.table(
        {"question": [q for q, _ in QUESTIONS], "relevant_ids": [r for _, r in QUESTIONS]}
    )


def build_target(folder: Path, target: str, rows: list[tuple[str, str, str]]) -> None:
    """Write the notes table, sync the index, register the prompt @production."""
    from lakeforge.vectors import sync

    with lakeforge.connect(target, project_dir=folder) as ws:
        ws.tables.write("gold.notes", notes_table(rows), mode="overwrite")
        sync(ws, INDEX)
        version = ws.prompts.register(PROMPT, TEMPLATE)
        ws.prompts.set_alias(PROMPT, "production", int(version.version))


@pytest.fixture(scope="session")
def rag_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dev and staging each with their own notes index (staging's notes differ)."""
    folder = lakeforge.init_project("ragproj", tmp_path_factory.mktemp("rag"))
    config = folder / "lakeforge.yaml"
    text = config.read_text().replace("checks: {signature: true, lineage: true}", POLICY, 1)
    config.write_text(text + VECTORS)
    git_init(folder)
    build_target(folder, "dev", NOTES)
    staged = [(i, k, t.replace("JFK", "Kennedy airport")) for i, k, t in NOTES]
    build_target(folder, "staging", [*staged, ("s99", "staging", "Staging-only note.")])
    return folder


@pytest.fixture
def rag_ws(rag_project: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=rag_project) as ws:
        yield ws


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(subprocess=True) as fake:
        yield fake


@pytest.fixture
def served_env(rag_project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What a `lakeforge serve` worker of dev has: the project and target to load into."""
    monkeypatch.setenv("LAKEFORGE_PROJECT_DIR", str(rag_project))
    monkeypatch.setenv("LAKEFORGE_TARGET", "dev")
    return rag_project
