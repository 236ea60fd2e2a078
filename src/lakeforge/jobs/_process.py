"""One task attempt as a supervised process: the same code runs locally and on a Ray worker.

The attempt runs ``_task_main.py`` in its own process group, so a timeout or a cancel
kills it together with every process it started. The task process dies with the thread
that started it (Linux ``PR_SET_PDEATHSIG``) and starts its work only once ``started``
has seen its pid (the runner records the process group there first), so a process group
recorded in the state store can be killed by whoever recovers the run after a crash.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

POLL_S = 0.1
TASK_MAIN = Path(__file__).with_name("_task_main.py")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class AttemptSpec:
    """Everything one attempt needs; plain data, so it can travel to a Ray worker."""

    task: str
    python: str | None
    script: str | None
    parameters: dict[str, Any]
    upstream_values: dict[str, dict[str, Any]]
    context: dict[str, Any]
    code_dir: str  # the deployed snapshot (or working copy): working directory, on sys.path
    target: str
    timeout_s: float | None
    env: dict[str, str] = field(default_factory=dict)  # added to the task's environment


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | timed_out | canceled
    error: str | None
    values: dict[str, Any]


def run_attempt(
    spec: AttemptSpec,
    out: IO[str],
    cancelled: Callable[[], bool],
    *,
    result: Path | None = None,
    started: Callable[[int], None] | None = None,
) -> Outcome:
    """Run one attempt to completion, timeout or cancel, writing its output to ``out``.

    The task process writes its outcome to ``result`` (a temporary file by default)
    before it exits; ``started`` gets its pid before the task itself begins.
    """
    with tempfile.TemporaryDirectory(prefix="lf-task-") as tmp:
        spec_file, result = Path(tmp) / "spec.json", result or Path(tmp) / "result.json"
        spec_file.write_text(
            json.dumps(
                {
                    "python": spec.python,
                    "script": spec.script,
                    "parameters": spec.parameters,
                    "upstream_values": spec.upstream_values,
                    "context": spec.context,
                    "result": str(result),
                    "parent_pid": os.getpid(),
                },
                default=str,
            )
        )
        paths = [spec.code_dir, os.environ.get("PYTHONPATH", "")]
        env = {
            **os.environ,
            **spec.env,
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "LAKEFORGE_TARGET": spec.target,
        }
        # -P: the jobs package folder does not go on sys.path (its modules would shadow)
        process = subprocess.Popen(
            [sys.executable, "-P", str(TASK_MAIN), str(spec_file)],
            cwd=spec.code_dir,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        _go(process, started)
        begun = time.monotonic()
        try:
            while process.poll() is None:
                if spec.timeout_s is not None and time.monotonic() - begun > spec.timeout_s:
                    kill_group(process)
                    return Outcome("timed_out", f"timed out after {spec.timeout_s:g} s", {})
                if cancelled():
                    kill_group(process)
                    return Outcome("canceled", "cancelled", {})
                time.sleep(POLL_S)
        except BaseException:  # a failing cancel check, an interrupt: leave nothing running
            kill_group(process)
            raise
        return read_outcome(result) or Outcome(
            "failed", f"task process exited with status {process.returncode}", {}
        )


def _go(process: subprocess.Popen[bytes], started: Callable[[int], None] | None) -> None:
    """Let the task process begin its work, once ``started`` has seen its pid."""
    assert process.stdin is not None
    try:
        if started is not None:
            started(process.pid)
        with contextlib.suppress(BrokenPipeError):  # it died already: its status says why
            process.stdin.write(b"go\n")
            process.stdin.close()
    except BaseException:
        kill_group(process)
        raise


def read_outcome(result: Path) -> Outcome | None:
    """The outcome a task process wrote before it exited; None if it wrote none."""
    try:
        outcome: dict[str, Any] = json.loads(result.read_text())
    except FileNotFoundError:
        return None
    if outcome["ok"]:
        return Outcome("succeeded", None, dict(outcome["values"]))
    return Outcome("failed", str(outcome["error"]), {})


def kill_group(process: subprocess.Popen[Any]) -> None:
    """Kill a process and every process it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def group_identity(pid: int) -> str | None:
    """``BOOT:PID:START`` of a live process (Linux): the boot and start time tell it apart
    from a later process that reuses the pid. None where /proc does not say."""
    try:
        boot = _BOOT_ID.read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{boot}:{pid}:{stat.rpartition(')')[2].split()[19]}"


def kill_recorded_group(identity: str, wait_s: float = 30.0) -> bool:
    """Kill the process group led by the process ``identity`` names, if any of it is left;
    whether none of it is alive afterwards (False: still dying after ``wait_s``).

    A process group id stays taken while any member lives, so a group of that id with the
    recorded leader gone is still the recorded one; a new leader with that id is not.
    """
    boot, pid, _ = identity.split(":")
    if not _BOOT_ID.exists() or _BOOT_ID.read_text().strip() != boot:
        return True  # the machine restarted since: nothing of the group is left
    pgid = int(pid)
    leader = group_identity(pgid)
    if leader is not None and leader != identity:
        return True  # the id now belongs to another process
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while live_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


def process_exited(pid: int) -> bool:
    """Whether process ``pid`` has exited; a zombie not yet reaped by its parent has.

    False for a process of another user that we may not signal (it runs).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    return False


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that have not exited (zombies have)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members
