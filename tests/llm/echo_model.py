"""Tiny chat pyfuncs for ``provider: mlflow`` (importable by the served worker)."""

from __future__ import annotations

from typing import Any

from mlflow.pyfunc import PythonModel


def field(model_input: Any, name: str) -> Any:
    """``name`` of the input: a dict without a signature, a one-row DataFrame with one."""
    value = model_input[name]
    return value.iloc[0] if hasattr(value, "iloc") else value


class EchoChat(PythonModel):
    """Answers ``echo: <last message>`` (or ``echo: <prompt>``); reports no usage."""

    # No type hints: MLflow would read them as the input schema.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        if "prompt" in model_input:
            return f"echo: {field(model_input, 'prompt')}"
        last = field(model_input, "messages")[-1]["content"]
        if last == "fail":
            raise RuntimeError("secret internal detail")
        return [f"echo: {last}"]


class ChatCompletionModel(PythonModel):
    """Answers in the shape of MLflow's ChatModel output, with its own usage."""

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fixed"}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33},
        }
