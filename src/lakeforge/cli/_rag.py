"""``lakeforge rag evaluate``: retrieval metrics of a vector index on labelled questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from lakeforge.cli._context import console, workspace
from lakeforge.errors import LakeforgeError

app = typer.Typer(help="RAG chains: retrieval evaluation.", no_args_is_help=True)


def _read_questions(path: Path) -> object:
    """Labelled questions from JSON lines or Parquet (lists of ids need a nested format)."""
    if not path.is_file():
        raise LakeforgeError(f"questions file {path} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise LakeforgeError(f"{path}:{number}: not a JSON object: {exc}") from None
        return rows
    raise LakeforgeError(
        f"questions file {path} is not .jsonl or .parquet",
        hint='one JSON object per line: {"question": "...", "relevant_ids": ["d1", "d2"]}',
    )


@app.command()
def evaluate(
    ctx: typer.Context,
    index: Annotated[str, typer.Argument(help="The vector index, schema.name.")],
    questions: Annotated[
        Path,
        typer.Argument(
            help="Labelled questions: .jsonl or .parquet with a question "
            "column and a list of relevant ids."
        ),  # fmt: skip
    ],
    k: Annotated[str, typer.Option("-k", help="Cut-offs, comma-separated.")] = "1,5,10",
    filter: Annotated[str | None, typer.Option(help="SQL predicate on metadata.")] = None,
    query_type: Annotated[
        str, typer.Option("--type", help="vector, hybrid or keyword.")
    ] = "vector",
    question_column: Annotated[str, typer.Option(help="The question column.")] = "question",
    relevant_column: Annotated[str, typer.Option(help="The relevant ids column.")] = "relevant_ids",
    log: Annotated[
        bool, typer.Option(help="Log the metrics in an MLflow run (experiment <project>/rag).")
    ] = False,
    format: Annotated[str, typer.Option(help="table or json.")] = "table",
) -> None:
    """recall@k, MRR and nDCG@k of INDEX on labelled QUESTIONS (no LLM judge)."""
    from lakeforge.rag import RetrievalEvaluation, evaluate_retrieval

    if query_type not in ("vector", "hybrid", "keyword"):
        raise LakeforgeError(f"--type {query_type!r} is not vector, hybrid or keyword")
    if format not in ("table", "json"):
        raise LakeforgeError(f"--format {format!r} is not table or json")
    try:
        cuts = [int(part) for part in k.split(",")]
    except ValueError:
        raise LakeforgeError(
            f"-k {k!r} is not comma-separated whole numbers (e.g. 1,5,10)"
        ) from None
    ws = workspace(ctx)
    kind: Literal["vector", "hybrid", "keyword"] = query_type  # type: ignore[assignment]
    data = _read_questions(questions)

    def score() -> RetrievalEvaluation:
        return evaluate_retrieval(
            ws,
            index,
            data,
            k=cuts,
            question_column=question_column,
            relevant_column=relevant_column,
            filter=filter,
            query_type=kind,
            log=log,
        )

    if log:
        with ws.start_run("rag", run_name=f"evaluate {index}", autolog=False):
            result = score()
    else:
        result = score()
    if format == "json":
        console.print_json(json.dumps({"metrics": result.metrics, "run_id": result.run_id}))
        return
    table = Table("metric", "value", header_style="bold cyan")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}")
    console.print(table)
    count = result.questions.num_rows
    console.print(f"{count} question(s)" + (f"; run {result.run_id}" if result.run_id else ""))
