"""One task attempt as a supervised process: the same code runs locally and on a Ray worker.

The attempt runs ``python -m lakeforge.jobs._task_main`` in its own process group, so a
timeout or a cancel kills it together with every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

POLL_S = 0.1


@dataclass(frozen=True)
class AttemptSpec:
    """Everything one attempt needs; plain data, so it can travel to a Ray worker."""

    task: str
    python: str | None
    script: str | None
    parameters: dict[str, Any]
    upstream_values: dict[str, dict[str, Any]]
    context: dict[str, Any]
    project_dir: str
    target: str
    timeout_s: float | None


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | timed_out | canceled
    error: str | None
    values: dict[str, Any]


def run_attempt(spec: AttemptSpec, out: IO[str], cancelled: Callable[[], bool]) -> Outcome:
    """Run one attempt to completion, timeout or cancel, writing its output to ``out``."""
    with tempfile.TemporaryDirectory(prefix="lf-task-") as tmp:
        spec_file, result = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(
            json.dumps(
                {
                    "python": spec.python,
                    "script": spec.script,
                    "parameters": spec.parameters,
                    "upstream_values": spec.upstream_values,
                    "context": spec.context,
                    "result": str(result),
                },
                default=str,
            )
        )
        paths = [spec.project_dir, os.environ.get("PYTHONPATH", "")]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "LAKEFORGE_TARGET": spec.target,
        }
        out.write(f"--- {datetime.now(UTC).isoformat()} attempt of {spec.task}\n")
        out.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", "lakeforge.jobs._task_main", str(spec_file)],
            cwd=spec.project_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        started = time.monotonic()
        while process.poll() is None:
            if spec.timeout_s is not None and time.monotonic() - started > spec.timeout_s:
                kill_group(process)
                return Outcome("timed_out", f"timed out after {spec.timeout_s:g} s", {})
            if cancelled():
                kill_group(process)
                return Outcome("canceled", "cancelled", {})
            time.sleep(POLL_S)
        if not result.exists():
            return Outcome("failed", f"task process exited with status {process.returncode}", {})
        outcome: dict[str, Any] = json.loads(result.read_text())
    if outcome["ok"]:
        return Outcome("succeeded", None, dict(outcome["values"]))
    return Outcome("failed", str(outcome["error"]), {})


def kill_group(process: subprocess.Popen[Any]) -> None:
    """Kill a process and every process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
