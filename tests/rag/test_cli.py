"""`lakeforge rag evaluate`: metrics of an index on a questions file, logged or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lakeforge.cli import _rag
from tests.rag.conftest import INDEX, QUESTIONS


def test_rag_evaluate_prints_and_logs_metrics(
    rag_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(rag_project)
    monkeypatch.setenv("LAKEFORGE_TARGET", "dev")
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(json.dumps({"question": q, "relevant_ids": r}) + "\n" for q, r in QUESTIONS)
    )
    app = typer.Typer()
    app.add_typer(_rag.app, name="rag")  # as lakeforge.cli registers it
    runner = CliRunner()
    done = runner.invoke(
        app, ["rag", "evaluate", INDEX, str(questions), "-k", "1,5", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    shown = json.loads(done.output)
    assert set(shown["metrics"]) == {"recall_at_1", "ndcg_at_1", "recall_at_5", "ndcg_at_5", "mrr"}
    assert shown["run_id"] is None and shown["metrics"]["recall_at_5"] >= 0.9

    done = runner.invoke(app, ["rag", "evaluate", INDEX, str(questions), "--log"])
    assert done.exit_code == 0, done.output
    assert "recall_at_10" in done.output and "6 question(s); run " in done.output

    bad = tmp_path / "questions.csv"
    bad.write_text("question,relevant_ids\n")
    done = runner.invoke(app, ["rag", "evaluate", INDEX, str(bad)])
    assert isinstance(done.exception, Exception)
    assert "is not .jsonl or .parquet" in str(done.exception)
