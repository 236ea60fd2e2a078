"""``Workspace`` methods are typed pass-throughs: each has the signature of what it calls.

Type hints are compared resolved (``typing.get_type_hints``, with the names each module
imports only for type checking), so an alias spelled differently still matches, while a
lost ``Literal``, a missing option or a changed default does not.
"""

from __future__ import annotations

import ast
import inspect
import sys
import typing
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pandas as pd
import pytest

from lakeforge import Workspace
from lakeforge.deployment import deploy, validate
from lakeforge.features import create_training_set, publish_table
from lakeforge.inference import score
from lakeforge.lakehouse import Ingestor, Lakehouse
from lakeforge.rag import evaluate_retrieval, log_chain
from lakeforge.tracking import Tracker, TrainingRun, evaluate, tune


def _namespace(fn: Callable[..., Any]) -> dict[str, Any]:
    """The globals of ``fn``'s module plus what it imports under ``if TYPE_CHECKING:``."""
    module = sys.modules[fn.__module__]
    namespace = dict(vars(module))
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            block = ast.Module(body=node.body, type_ignores=[])
            exec(compile(block, str(module.__file__), "exec"), namespace)
    return namespace


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    fn = inspect.unwrap(fn)
    return typing.get_type_hints(fn, globalns=_namespace(fn))


def _params(fn: Callable[..., Any], skip: int) -> list[inspect.Parameter]:
    return list(inspect.signature(inspect.unwrap(fn)).parameters.values())[skip:]


def _assert_same(facade: Callable[..., Any], target: Callable[..., Any], *, extra: int = 0) -> None:
    """``facade`` (a method; ``extra`` leading parameters of its own) mirrors ``target``
    without its first parameter (the workspace, tracker, lakehouse or ``self``)."""
    mine, theirs = _params(facade, 1 + extra), _params(target, 1)
    mine_hints, their_hints = _hints(facade), _hints(target)
    assert [p.kind for p in mine] == [p.kind for p in theirs], (mine, theirs)
    for own, other in zip(mine, theirs, strict=True):
        if own.kind in (own.KEYWORD_ONLY, own.VAR_KEYWORD):
            assert own.name == other.name
        assert own.default == other.default, own.name
        assert mine_hints.get(own.name) == their_hints.get(other.name), own.name


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("create_training_set", create_training_set),
        ("publish_table", publish_table),
        ("validate", validate),
        ("deploy", deploy),
        ("start_run", Tracker.start_run),
        ("tune", tune),
        ("evaluate", evaluate),
        ("ingest", Ingestor.run),
        ("ingest_retry", Ingestor.retry),
        ("ingest_forget", Ingestor.forget),
        ("score", score),
        ("log_chain", log_chain),
        ("evaluate_retrieval", evaluate_retrieval),
    ],
)
def test_workspace_method_has_the_signature_of_what_it_calls(
    method: str, target: Callable[..., Any]
) -> None:
    facade = getattr(Workspace, method)
    _assert_same(facade, target)
    if method == "start_run":  # a generator made a context manager
        assert _hints(facade)["return"] == AbstractContextManager[TrainingRun]
    else:
        assert _hints(facade)["return"] == _hints(target)["return"]


def test_score_batch_keeps_its_options_and_returns_a_frame() -> None:
    from lakeforge.inference import score_batch

    _assert_same(Workspace.score_batch, score_batch)
    hints = _hints(Workspace.score_batch)
    assert hints["features"] == typing.Literal["offline", "online"]
    assert hints["return"] is pd.DataFrame


def test_log_model_has_one_overload_per_path() -> None:
    """Plain: Tracker.log_model's options; with ``training_set=``: log_feature_model's."""
    from lakeforge.features import TrainingSet, log_feature_model

    plain, featured = typing.get_overloads(Workspace.log_model)
    plain_params = [p for p in _params(plain, 1) if p.name != "training_set"]
    assert [(p.name, p.kind, p.default) for p in plain_params] == [
        (p.name, p.kind, p.default) for p in _params(Tracker.log_model, 1)
    ]
    assert _hints(plain)["training_set"] is type(None)
    _assert_same(featured, log_feature_model)
    assert _hints(featured)["training_set"] is TrainingSet


def test_create_training_set_takes_a_lakehouse() -> None:
    hints = _hints(create_training_set)
    assert hints["lakehouse"] is Lakehouse
    with pytest.raises(TypeError, match="expected a Lakehouse.*got str"):
        create_training_set("not a lakehouse", pd.DataFrame({"k": [1]}), [], label=None)  # type: ignore[arg-type]
