"""Entry point of one task attempt, run as ``python -P .../_task_main.py SPEC_FILE``.

The spec file (JSON) names a ``module:function`` or a script, its parameters, and the
upstream task values. A function's return value (a JSON object) becomes this task's
values; a script writes them as JSON to ``$LAKEFORGE_TASK_VALUES_OUT``. The outcome is
written durably to the spec's ``result`` path before the process exits; the exit status
is 0 on success.

The process dies with its runner, and waits for the runner's ``go`` line on stdin before
it starts the task. Only the standard library is imported here, so a task that does not
use lakeforge starts in milliseconds.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any


def _call(target: str, parameters: dict[str, Any]) -> Any:
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeError(f"cannot import module {module_name!r}: {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise RuntimeError(f"module {module_name!r} has no function {function_name!r}")
    return function(**parameters)


def _script(path: str, parameters: dict[str, Any], out: Path) -> dict[str, Any]:
    env = {**os.environ, "LAKEFORGE_TASK_VALUES_OUT": str(out)}
    env |= {
        f"LF_PARAM_{k.upper()}": json.dumps(v) if not isinstance(v, str) else v
        for k, v in parameters.items()
    }
    out.unlink(missing_ok=True)  # values an earlier run of the script wrote are not ours
    command = [path] if os.access(path, os.X_OK) else ["bash", path]
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"script {path} exited with status {done.returncode}")
    return json.loads(out.read_text()) if out.exists() and out.read_text().strip() else {}


def _die_with_runner(parent: int) -> None:
    """Be killed when the runner's thread that started this process ends (Linux)."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        raise SystemExit("lakeforge task: the runner died before the task started")
    if sys.stdin.readline() != "go\n":
        raise SystemExit("lakeforge task: the runner did not let the task start")


def _write(path: Path, outcome: dict[str, Any]) -> None:
    """Write the outcome atomically and durably: it outlives a crash of the runner."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as handle:
        json.dump(outcome, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def main(spec_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text())
    _die_with_runner(int(spec["parent_pid"]))
    result_path = Path(spec["result"])
    os.environ["LAKEFORGE_TASK_VALUES"] = json.dumps(spec["upstream_values"])
    os.environ["LAKEFORGE_JOB_CONTEXT"] = json.dumps(spec["context"])
    sys.path.insert(0, spec["context"]["code_dir"])  # -P left the current folder off
    try:
        if spec.get("python"):
            values = _call(spec["python"], spec["parameters"])
        else:
            values = _script(spec["script"], spec["parameters"], result_path.with_suffix(".out"))
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise RuntimeError(
                f"task returned {type(values).__name__}; return a dict (its task values) or None"
            )
        json.dumps(values)
    except BaseException as exc:  # noqa: BLE001 - report every failure to the runner
        traceback.print_exc()
        _write(result_path, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _write(result_path, {"ok": True, "values": values})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
