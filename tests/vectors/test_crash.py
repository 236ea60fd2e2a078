"""Exactly once across crashes: kill -9 at each step of a sync, then rerun; two at once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lakeforge
import tests.vectors.hash_embedder  # noqa: F401  (registers the model in this process too)
from lakeforge import Workspace
from tests.vectors.conftest import docs_table, make_project, source

HASH_INDEX = """
  gold.hash_index:
    source: gold.docs
    primary_key: doc_id
    text_column: text
    embedding: {model: test-hash-embedder}
    full_text: true
"""
ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.slow  # a subprocess per test
POINTS = ["embedded", "merged", "indexed", "tagged"]


@pytest.fixture
def hws(tmp_path: Path) -> Iterator[Workspace]:
    project = make_project(tmp_path, HASH_INDEX)
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.tables.write("gold.docs", docs_table())
        yield ws


def contents(ws: Workspace) -> dict[int, tuple[str, str]]:
    found = ws.vectors.search("gold.hash_index", "x", k=1000)
    keys = found["doc_id"].to_pylist()
    assert len(keys) == len(set(keys)), f"duplicate keys: {sorted(keys)}"
    return dict(
        zip(
            keys,
            zip(found["text"].to_pylist(), found["kind"].to_pylist(), strict=True),
            strict=True,
        )
    )


def run_sync(ws: Workspace, point: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.vectors.crash_sync", str(ws.project.directory), point],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def change_source(ws: Workspace) -> None:
    dt = ws.tables.delta("gold.docs", write=True)
    dt.delete("doc_id IN (2, 5)")
    dt.update(updates={"text": "'rewritten'", "kind": "'note'"}, predicate="doc_id = 1")
    ws.tables.write("gold.docs", docs_table([(20, "new row", "incident", "JFK")]))


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_during_an_incremental_sync_then_rerun(hws: Workspace, point: str) -> None:
    hws.vectors.sync("gold.hash_index")
    before = contents(hws)
    change_source(hws)
    process = run_sync(hws, point)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, output
    assert contents(hws) == before  # the pin did not move: search reads the last good sync
    result = hws.vectors.sync("gold.hash_index")
    assert result.delta_version == hws.tables.delta("gold.docs").version()
    assert contents(hws) == source(hws)
    assert hws.vectors.sync("gold.hash_index").upserted == 0


@pytest.mark.parametrize("point", ["merged", "tagged"])
def test_kill_9_during_the_first_sync_then_rerun(hws: Workspace, point: str) -> None:
    process = run_sync(hws, point)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL, output
    hws.vectors.sync("gold.hash_index")
    assert contents(hws) == source(hws)


def test_two_syncs_at_once_take_turns(hws: Workspace) -> None:
    hws.vectors.sync("gold.hash_index")
    change_source(hws)
    processes = [run_sync(hws, "none") for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    # one applied the changes, the other found nothing left to do
    counts = sorted(
        line.split()[2:]
        for out in outputs
        for line in out.splitlines()
        if line.startswith("synced")
    )
    assert counts == [["0", "0"], ["2", "2"]], outputs
    assert contents(hws) == source(hws)
