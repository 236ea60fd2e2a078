"""Checks ``lakeforge deploy`` makes on a staged snapshot before it changes anything.

Every ``python: module:function`` must import from the snapshot (in a subprocess: user
code never runs in the deploying process), every script must be in it, and every table a
trigger watches must exist in the target or be declared. Problems name the resource and
field, e.g. ``jobs.refresh.tasks.build.python: module 'pipelines' has no function 'biuld'``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from lakeforge.errors import LakeforgeError
from lakeforge.project import PROJECT_DIR_ENV, TableUpdateTrigger

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace

IMPORT_TIMEOUT_S = 300.0

# Run with the snapshot first on sys.path: reads [[field, module, function], ...] as JSON
# on stdin, writes the problems found as a JSON list to argv[1].
_PROBE = """
import importlib, json, sys
problems = []
for field, module_name, function_name in json.load(sys.stdin):
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:
        problems.append(f"{field}: cannot import module {module_name!r}: "
                        f"{type(exc).__name__}: {exc}")
        continue
    if not callable(getattr(module, function_name, None)):
        problems.append(f"{field}: module {module_name!r} has no function {function_name!r}")
with open(sys.argv[1], "w") as out:
    json.dump(problems, out)
"""


def check_references(ws: Workspace, code_dir: Path, what: str) -> list[str]:
    """Problems with the jobs' references in the snapshot at ``code_dir`` (``what``
    describes it, e.g. ``the files git tracks at 1a2b3c``); empty when all resolve."""
    problems: list[str] = []
    calls: list[tuple[str, str, str]] = []
    declared = _declared_tables(ws)
    for job, spec in ws.project.config.all_jobs().items():
        for task in spec.tasks:
            field = f"jobs.{job}.tasks.{task.key}"
            if task.python:
                module, _, function = task.python.partition(":")
                calls.append((f"{field}.python", module, function))
            elif task.script and not (code_dir / task.script).is_file():
                problems.append(
                    f"{field}.script: {task.script} is not in the deployed code ({what})"
                )
        for index, trigger in enumerate(spec.triggers):
            if isinstance(trigger, TableUpdateTrigger):
                problems += _trigger_tables(
                    ws, f"jobs.{job}.triggers[{index}].tables", trigger, declared
                )
    return _imports(ws, code_dir, calls) + problems


def _declared_tables(ws: Workspace) -> set[str]:
    names = set()
    for key in ws.project.config.tables:
        try:
            names.add(str(ws.tables.name(key)))
        except LakeforgeError:
            continue  # the plan reports a bad table key
    return names


def _trigger_tables(
    ws: Workspace, field: str, trigger: TableUpdateTrigger, declared: set[str]
) -> list[str]:
    problems = []
    for table in trigger.tables:
        try:
            name = str(ws.tables.name(table))
        except LakeforgeError as exc:
            problems.append(f"{field}: {exc.message}")
            continue
        if name not in declared and not ws.tables.exists(name):
            problems.append(
                f"{field}: {name} does not exist in target {ws.target.name} and is not "
                "declared under tables:"
            )
    return problems


def _imports(ws: Workspace, code_dir: Path, calls: list[tuple[str, str, str]]) -> list[str]:
    """Import each ``module:function`` in a subprocess with the snapshot first on its path."""
    if not calls:
        return []
    paths = [str(code_dir), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "LAKEFORGE_TARGET": ws.target.name,
        PROJECT_DIR_ENV: str(ws.project.directory),
    }
    with tempfile.TemporaryDirectory(prefix="lf-deploy-") as tmp:
        out = Path(tmp) / "problems.json"
        try:
            done = subprocess.run(
                [sys.executable, "-P", "-c", _PROBE, str(out)],
                input=json.dumps(calls),
                cwd=code_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=IMPORT_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return [f"jobs: importing the task modules took more than {IMPORT_TIMEOUT_S:g} s"]
        if not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return [f"jobs: importing the task modules failed: {' '.join(tail)}"]
        return list(json.loads(out.read_text()))
