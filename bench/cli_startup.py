"""How long the CLI takes to answer trivial commands, next to MLflow's CLI on the same machine.

Each command runs as a fresh process (as a user types it); the median wall time over the
runs and the child's peak RSS are reported. Target: ``lakeforge --help`` and listing
commands (``tables list``, ``approvals list``) under 0.5 s.

    .venv/bin/python bench/cli_startup.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
BIN = Path(sys.executable).parent


def _time(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run of ``command``."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 runs per command")
    parser.add_argument("--runs", type=int, help="runs per command (default 10; quick 3)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 10)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run(
            [str(BIN / "lakeforge"), "init", "p"], cwd=folder, check=True, capture_output=True
        )
        project = folder / "p"
        subprocess.run(
            [
                str(BIN / "lakeforge"),
                "sql",
                "create table dev.bronze.t as select 1 AS x",
                "--write",
            ],
            cwd=project,
            check=True,
            capture_output=True,
        )
        commands = {
            "mlflow --help (anchor)": [str(BIN / "mlflow"), "--help"],
            "lakeforge --help": [str(BIN / "lakeforge"), "--help"],
            "lakeforge tables list": [str(BIN / "lakeforge"), "tables", "list"],
            "lakeforge approvals list": [str(BIN / "lakeforge"), "approvals", "list"],
            "lakeforge sql 'select 1'": [str(BIN / "lakeforge"), "sql", "select 1"],
        }
        results = {}
        for name, command in commands.items():
            _time(command, project)  # warm the file cache
            samples = [_time(command, project) for _ in range(runs)]
            results[name] = (statistics.median(s[0] for s in samples), max(s[1] for s in samples))
    anchor = results["mlflow --help (anchor)"][0]
    print(f"{'command':<28} {'median s':>9} {'vs mlflow':>10} {'peak MiB':>9}  target")
    missed = False
    for name, (seconds, rss) in results.items():
        verdict = "" if "anchor" in name else ("ok" if seconds <= TARGET_S else "MISSED")
        if name.startswith("lakeforge") and name != "lakeforge sql 'select 1'":
            missed |= verdict == "MISSED"
        else:
            verdict = "" if "anchor" in name else "(no target)"
        print(f"{name:<28} {seconds:>9.3f} {anchor / seconds:>9.1f}x {rss:>9.0f}  {verdict}")
    print(f"{runs} runs each; Python {sys.version.split()[0]}, {os.cpu_count()} cores")
    if args.strict and missed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
