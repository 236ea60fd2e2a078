"""The Evidently half of the monitoring benchmark and of the drift parity test.

Run with the Python of the venv holding Evidently (``.venv-evidently``, built from
``bench/requirements-evidently.txt``: Evidently 0.7 does not import under pandas 3):

    .venv-evidently/bin/python bench/evidently_side.py CASES.json [--reps N]

CASES.json is a list of cases ``{"reference": PARQUET, "current": PARQUET, "numeric":
[...], "categorical": [...], "methods": {col: name}, "thresholds": {col: t}}``. Each runs
``Report([DataDriftPreset(...)], include_tests=True)`` with that data definition; one
``BENCH_RESULT <json>`` line follows (the protocol of ``_common.py``, which this file
does not import so that it runs without Lakeforge): the timed runs, peak RSS, and in
``extra["cases"]`` every column's method, score, threshold and verdict (Evidently's own
test status) plus the share of drifted columns.
The timed part is building the two datasets from pandas frames and running the report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

RESULT_MARK = "BENCH_RESULT "


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def method_names() -> dict[str, str]:
    """Evidently's stattest display names (what a report states) to their names."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    return {
        test.display_name: name
        for name, by_type in _registered_stat_tests.items()
        for test in by_type.values()
    }


def verdicts(snapshot: Any, columns: list[str]) -> tuple[dict[str, Any], float]:
    """Per column (method, score, threshold, detected) and the share of drifted columns."""
    names = method_names()
    found: dict[str, Any] = {}
    share = float("nan")
    for result in snapshot.dict()["metrics"]:
        config = result["config"]
        kind = config.get("type", "")
        if kind.endswith("ValueDrift"):
            column = config["column"]
            score = float(result["value"])
            method = names.get(config["method"], config["method"])
            threshold = float(config["threshold"])
            found[column] = {"method": method, "score": score, "threshold": threshold}
        elif kind.endswith("DriftedColumnsCount"):
            share = float(result["value"]["share"])
    # The verdict as Evidently's own test states it (the stattest's comparison).
    for test in snapshot.dict().get("tests", []):
        name = test.get("name", "")
        prefix = "Value Drift for column "
        if name.startswith(prefix) and name[len(prefix) :] in found:
            found[name[len(prefix) :]]["detected"] = test["status"] == "FAIL"
    missing = [c for c in columns if "detected" not in found.get(c, {})]
    if missing:
        raise SystemExit(f"no Evidently verdict for columns {missing}")
    return found, share


def run_case(case: dict[str, Any], reps: int) -> tuple[list[float], dict[str, Any]]:
    """Evidently's DataDriftPreset on one case, ``reps`` times; the runs' seconds and verdicts."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(case["reference"])
    current = pd.read_parquet(case["current"])
    columns = [*case["numeric"], *case["categorical"]]
    definition = DataDefinition(
        numerical_columns=case["numeric"], categorical_columns=case["categorical"]
    )
    preset = DataDriftPreset(
        columns=columns,
        per_column_method=case.get("methods") or None,
        per_column_threshold=case.get("thresholds") or None,
    )
    times = []
    snapshot = None
    for _ in range(reps):
        start = time.perf_counter()
        ref = Dataset.from_pandas(reference, data_definition=definition)
        cur = Dataset.from_pandas(current, data_definition=definition)
        snapshot = Report([preset], include_tests=True).run(cur, ref)
        times.append(time.perf_counter() - start)
    found, share = verdicts(snapshot, columns)
    return times, {"rows": len(current), "columns": found, "drift_share": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cases", help="JSON file: a list of cases")
    parser.add_argument("--reps", type=int, default=1)
    args = parser.parse_args()
    import evidently.presets  # noqa: F401  (imports timed apart from the runs)

    imported = rss_mib()
    times: list[float] = []
    results = []
    for case in json.loads(Path(args.cases).read_text()):
        case_times, found = run_case(case, args.reps)
        times += case_times
        results.append(found)
    result = {
        "side": "evidently",
        "rows": sum(r["rows"] for r in results),
        "times": times,
        "peak_mib": peak_rss_mib(),
        "import_mib": imported,
        "extra": {"cases": results},
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
