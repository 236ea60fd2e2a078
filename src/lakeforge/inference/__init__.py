"""Batch and streaming inference: score Delta tables, SQL results or frames with a
registered model, into Delta tables or files, idempotently."""

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

if TYPE_CHECKING:
    from lakeforge.inference._batch import (
        ENGINES,
        ScoreJob,
        ScoreResult,
        find_engine,
        score,
        score_batch,
    )
    from lakeforge.inference._load import ModelRef, resolve_model
    from lakeforge.inference._model import ERRORS_SCHEMA, ScoredBatch, Scorer
    from lakeforge.inference._sink import DeltaSink, FileSink
    from lakeforge.inference._stream import MicroBatch, StreamResult, run_stream

_HOME = {
    "ENGINES": "_batch",
    "ScoreJob": "_batch",
    "ScoreResult": "_batch",
    "find_engine": "_batch",
    "score": "_batch",
    "score_batch": "_batch",
    "ERRORS_SCHEMA": "_model",
    "ModelRef": "_load",
    "ScoredBatch": "_model",
    "Scorer": "_model",
    "resolve_model": "_load",
    "DeltaSink": "_sink",
    "FileSink": "_sink",
    "MicroBatch": "_stream",
    "StreamResult": "_stream",
    "run_stream": "_stream",
}

__getattr__ = lazy_names(__name__, _HOME)

__all__ = [
    "ENGINES",
    "ERRORS_SCHEMA",
    "DeltaSink",
    "FileSink",
    "MicroBatch",
    "ModelRef",
    "ScoreJob",
    "ScoreResult",
    "ScoredBatch",
    "Scorer",
    "StreamResult",
    "find_engine",
    "resolve_model",
    "run_stream",
    "score",
    "score_batch",
]
