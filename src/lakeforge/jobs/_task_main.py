"""Entry point of one task attempt, run as ``python -m lakeforge.jobs._task_main SPEC_FILE``.

The spec file (JSON) names a ``module:function`` or a script, its parameters, and the
upstream task values. A function's return value (a JSON object) becomes this task's
values; a script writes them as JSON to ``$LAKEFORGE_TASK_VALUES_OUT``. The outcome is
written to the spec's ``result`` path; the exit status is 0 on success.
"""

from __future__ import annotations

import importlib
import json
import os
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
    command = [path] if os.access(path, os.X_OK) else ["bash", path]
    done = subprocess.run(command, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"script {path} exited with status {done.returncode}")
    return json.loads(out.read_text()) if out.exists() and out.read_text().strip() else {}


def main(spec_file: str) -> int:
    spec = json.loads(Path(spec_file).read_text())
    result_path = Path(spec["result"])
    os.environ["LAKEFORGE_TASK_VALUES"] = json.dumps(spec["upstream_values"])
    os.environ["LAKEFORGE_JOB_CONTEXT"] = json.dumps(spec["context"])
    sys.path.insert(0, spec["context"]["project_dir"])
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
        result_path.write_text(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    result_path.write_text(json.dumps({"ok": True, "values": values}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
