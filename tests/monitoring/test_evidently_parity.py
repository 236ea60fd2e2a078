"""The drift decision per column equals Evidently's DataDriftPreset on the same data.

Evidently 0.7 does not import under pandas 3, so it runs in its own venv
(``.venv-evidently``, built here from ``bench/requirements-evidently.txt`` when missing)
through ``bench/evidently_side.py``, once for all cases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakeforge.monitoring._drift import dataset_drift, drift_row
from lakeforge.monitoring._stats import infer_kind, summarize

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-evidently"
REQUIREMENTS = ROOT / "bench" / "requirements-evidently.txt"
SIDE = ROOT / "bench" / "evidently_side.py"

# (reference rows, current rows): both sides of Evidently's 1,000-row switch (nulls put
# 1,001 rows under it for some columns), KS exact (<= 10,000 values) and asymptotic.
SIZES = [(50, 60), (500, 400), (1000, 1000), (1001, 1200), (5000, 20000)]
# Overridden methods, on extra columns of the cases of these reference sizes (Evidently
# takes about half a second per column here, so not every case has them).
METHODS = {"num_js": "jensenshannon", "num_psi": "psi", "cat_psi": "psi", "num_ks": "ks"}
METHOD_SIZES = {500, 5000}
THRESHOLDS = {"num_mid": 0.2, "cat_many": 0.05}


def make_frame(rows: int, shifted: bool, seed: int, *, overridden: bool) -> pa.Table:
    """Numbers (continuous with nulls, 15 integers, 4 integers, binary), categories (with
    nulls, booleans, 40 values) and, when ``overridden``, the columns of ``METHODS``;
    ``shifted`` moves each a little."""
    rng = np.random.default_rng(seed)
    s = 1.0 if shifted else 0.0
    num = rng.normal(0.25 * s, 1.0, rows)
    num_mask = rng.random(rows) < 0.05
    cats = np.array(list("abcdefg"))
    cat_p = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1, 0.0]) * (1 - 0.1 * s)
    cat_p[-1] = 0.1 * s
    columns = {
        "num": pa.array(num, mask=num_mask),
        "num_low": rng.choice(4, rows, p=[0.4, 0.3, 0.2 - 0.05 * s, 0.1 + 0.05 * s]),
        "num_bin": (rng.random(rows) < 0.3 + 0.08 * s).astype(np.int64),
        "num_mid": rng.integers(0, 15, rows) + int(s),
        "cat": pa.array(
            rng.choice(cats, rows, p=cat_p / cat_p.sum()), mask=rng.random(rows) < 0.03
        ),
        "flag": rng.random(rows) < 0.5 + 0.1 * s,
        "cat_many": rng.choice([f"v{i:02d}" for i in range(40)], rows),
    }
    if overridden:
        columns.update(
            num_js=rng.normal(0.2 * s, 1.0, rows),
            num_psi=rng.exponential(1.0 + 0.2 * s, rows),
            num_ks=rng.gamma(2.0, 1.0 + 0.1 * s, rows),
            cat_psi=rng.choice(["x", "y", "z"], rows, p=[0.5, 0.3 - 0.1 * s, 0.2 + 0.1 * s]),
        )
    return pa.table(columns)


def kinds(table: pa.Table) -> dict[str, str]:
    return {f.name: str(infer_kind(f.type)) for f in table.schema}


@pytest.fixture(scope="module")
def evidently_python() -> Path:
    python = VENV / "bin" / "python"
    ready = (
        python.exists()
        and subprocess.run([str(python), "-c", "import evidently.presets"]).returncode == 0
    )
    if not ready:  # a fresh checkout (CI): build it once
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
        )
    return python


@pytest.fixture(scope="module")
def cases(evidently_python: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every case's data and Evidently's verdicts on it (one Evidently process for all)."""
    folder = tmp_path_factory.mktemp("parity")
    made: list[dict[str, Any]] = []
    for i, (n_ref, n_cur) in enumerate(SIZES):
        for shifted in (False, True):
            overridden = n_ref in METHOD_SIZES
            reference = make_frame(n_ref, False, seed=2 * i, overridden=overridden)
            current = make_frame(n_cur, shifted, seed=2 * i + 1, overridden=overridden)
            name = f"{n_ref}_{n_cur}_{'shifted' if shifted else 'same'}"
            pq.write_table(reference, folder / f"{name}_ref.parquet")
            pq.write_table(current, folder / f"{name}_cur.parquet")
            kind = kinds(reference)
            made.append(
                {
                    "name": name,
                    "reference": str(folder / f"{name}_ref.parquet"),
                    "current": str(folder / f"{name}_cur.parquet"),
                    "numeric": [c for c, k in kind.items() if k == "numeric"],
                    "categorical": [c for c, k in kind.items() if k == "categorical"],
                    "methods": {c: m for c, m in METHODS.items() if c in kind},
                    "thresholds": THRESHOLDS,
                    "tables": (reference, current),
                }
            )
    spec = folder / "cases.json"
    spec.write_text(json.dumps([{k: v for k, v in c.items() if k != "tables"} for c in made]))
    proc = subprocess.run(
        [str(evidently_python), str(SIDE), str(spec)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT "))
    results = json.loads(line.removeprefix("BENCH_RESULT "))["extra"]["cases"]
    for case, result in zip(made, results, strict=True):
        case["evidently"] = result
    return made


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first run builds Evidently's venv
def test_every_column_gets_evidentlys_verdict(cases: list[dict[str, Any]]) -> None:
    methods_seen: set[str] = set()
    differences = []
    for case in cases:
        reference, current = case["tables"]
        rows = []
        for column, kind in kinds(reference).items():
            ours = drift_row(
                summarize(current.column(column), kind),  # type: ignore[arg-type]
                summarize(reference.column(column), kind),  # type: ignore[arg-type]
                method=METHODS.get(column),
                threshold=THRESHOLDS.get(column),
            )
            rows.append(ours)
            theirs = case["evidently"]["columns"][column]
            methods_seen.add(ours["drift_method"])
            got = (ours["drift_method"], ours["drift_threshold"], ours["drift_detected"])
            want = (theirs["method"], theirs["threshold"], theirs["detected"])
            if got != want or ours["drift_score"] != pytest.approx(
                theirs["score"], rel=1e-6, abs=1e-12
            ):
                differences.append((case["name"], column, got, ours["drift_score"], theirs))
        share = dataset_drift(rows)["drift_share"]
        assert share == pytest.approx(case["evidently"]["drift_share"]), case["name"]
    assert differences == []
    # The cases reach every default and overridden method.
    assert methods_seen == {"ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi"}
    detected = [c["evidently"]["drift_share"] for c in cases if c["name"].endswith("shifted")]
    assert max(detected) > 0  # some shifts are found, so the verdicts compared differ


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_verdicts_include_both_outcomes_per_method(cases: list[dict[str, Any]]) -> None:
    outcomes: dict[str, set[bool]] = {}
    for case in cases:
        for found in case["evidently"]["columns"].values():
            outcomes.setdefault(found["method"], set()).add(found["detected"])
    assert {m for m, seen in outcomes.items() if seen == {True, False}} >= {
        "ks",
        "chisquare",
        "wasserstein",
        "jensenshannon",
    }
