"""Compliance checks on one model version: tags, description, signature, lineage, metrics,
size, latency and forbidden feature columns."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeforge.project import Bounds, Checks

# Lines Lakeforge writes into a version's description: log_model's default, validation
# results, and copies between targets. A description check wants a person's words.
_GENERATED = re.compile(
    r"^(Trained by run \S+ at commit .+ on .*"
    r"|Validation [0-9a-f]{12} \((enabled|dry_run|disabled), .*\): .*"
    r"|Copied from \S+ \(target \S+\).*)$"
)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed or not, the value seen and the rule it met."""

    check: str
    passed: bool
    message: str
    value: float | None = None
    threshold: str | None = None


@dataclass
class Candidate:
    """What the checks look at: the version, its run, and its downloaded model."""

    name: str
    version: int
    description: str
    tags: dict[str, str]
    run_tags: dict[str, str]
    run_metrics: dict[str, float]
    local_path: Path
    signature: Any
    has_input_example: bool


def bounds_text(bounds: Bounds) -> str:
    parts = []
    if bounds.min is not None:
        parts.append(f">= {bounds.min:g}")
    if bounds.max is not None:
        parts.append(f"<= {bounds.max:g}")
    return " and ".join(parts) or "any"


def within(value: float, bounds: Bounds) -> bool:
    return (bounds.min is None or value >= bounds.min) and (
        bounds.max is None or value <= bounds.max
    )


def human_description(text: str) -> str:
    """``text`` without the lines Lakeforge writes itself (training, validation, copy)."""
    lines = [line for line in text.splitlines() if not _GENERATED.match(line.strip())]
    return "\n".join(lines).strip()


def input_columns(signature: Any) -> list[str]:
    """Column names of a model signature's inputs (empty for tensor signatures)."""
    if signature is None or signature.inputs is None:
        return []
    return [name for name in signature.inputs.input_names() if isinstance(name, str)]


def run_compliance(candidate: Candidate, checks: Checks) -> list[CheckResult]:
    """Every compliance check the policy turns on, in a fixed order."""
    results: list[CheckResult] = []
    if checks.required_tags:
        missing = [t for t in checks.required_tags if not candidate.tags.get(t)]
        results.append(
            CheckResult(
                "required_tags",
                not missing,
                f"missing tag(s): {', '.join(missing)}" if missing else "all required tags set",
                threshold=", ".join(checks.required_tags),
            )
        )
    if checks.description:
        has = bool(human_description(candidate.description))
        results.append(
            CheckResult(
                "description",
                has,
                "has a description written by a person"
                if has
                else "the version has no description written by a person (Lakeforge's own "
                "'Trained by run', 'Validation' and 'Copied from' lines do not count): pass "
                "log_model(..., description=...) or set it with MlflowClient()"
                ".update_model_version(name, version, description=...)",
            )
        )
    if checks.signature:
        problems = [
            what
            for what, ok in (
                ("signature", candidate.signature is not None),
                ("input example", candidate.has_input_example),
            )
            if not ok
        ]
        results.append(
            CheckResult(
                "signature",
                not problems,
                f"no {' and no '.join(problems)} logged with the model"
                if problems
                else "signature and input example logged",
            )
        )
    if checks.lineage:
        merged = {**candidate.run_tags, **candidate.tags}
        commit = merged.get("lakeforge.git.commit")
        data = json.loads(merged.get("lakeforge.data_versions", "{}") or "{}")
        missing = [w for w, ok in (("code commit", commit), ("data versions", data)) if not ok]
        fixes = {
            "code commit": "the training run was not in a git repository with a commit: run "
            "`git init && git add -A && git commit -m init` in the project folder, then "
            "train again",
            "data versions": "the run read no Lakeforge table: read the training data with "
            "ws.tables.read or ws.sql inside `with ws.start_run(...)`",
        }
        results.append(
            CheckResult(
                "lineage",
                not missing,
                f"lineage lacks the {' and the '.join(missing)} ("
                + "; ".join(fixes[m] for m in missing)
                + ")"
                if missing
                else f"commit {str(commit)[:12]}, data {data}",
            )
        )
    for metric, bounds in checks.metrics.items():
        results.append(_metric_check(candidate, metric, bounds))
    if checks.max_size_mb is not None:
        size = sum(f.stat().st_size for f in candidate.local_path.rglob("*") if f.is_file())
        mb = size / 2**20
        results.append(
            CheckResult(
                "max_size_mb",
                mb <= checks.max_size_mb,
                f"model is {mb:.2f} MB",
                value=round(mb, 3),
                threshold=f"<= {checks.max_size_mb:g}",
            )
        )
    if checks.max_latency_p95_ms is not None:
        results.append(_latency_check(candidate, checks.max_latency_p95_ms))
    if checks.forbidden_columns:
        forbidden = {c.lower() for c in checks.forbidden_columns}
        used = [c for c in input_columns(candidate.signature) if c.lower() in forbidden]
        results.append(
            CheckResult(
                "forbidden_columns",
                not used,
                f"uses forbidden column(s): {', '.join(used)}" if used else "no forbidden columns",
                threshold=", ".join(sorted(forbidden)),
            )
        )
    return results


def _metric_check(candidate: Candidate, metric: str, bounds: Bounds) -> CheckResult:
    name = f"metric:{metric}"
    if metric not in candidate.run_metrics:
        known = ", ".join(sorted(candidate.run_metrics)) or "none"
        return CheckResult(
            name,
            False,
            f"the run of {candidate.name} v{candidate.version} has no metric {metric!r} "
            f"(its metrics: {known})",
            threshold=bounds_text(bounds),
        )
    value = candidate.run_metrics[metric]
    return CheckResult(
        name,
        within(value, bounds),
        f"{metric} = {value:.6g}",
        value=value,
        threshold=bounds_text(bounds),
    )


def _latency_check(candidate: Candidate, limit_ms: float, runs: int = 50) -> CheckResult:
    import mlflow

    model = mlflow.pyfunc.load_model(str(candidate.local_path))
    example = model.input_example
    if example is None:
        return CheckResult(
            "max_latency_p95_ms",
            False,
            "no input example to measure latency on",
            threshold=f"<= {limit_ms:g}",
        )
    row = example.head(1) if hasattr(example, "head") else example
    for _ in range(3):  # warm up
        model.predict(row)
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        model.predict(row)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[int(0.95 * (len(timings) - 1))]
    return CheckResult(
        "max_latency_p95_ms",
        p95 <= limit_ms,
        f"p95 single-row latency {p95:.2f} ms over {runs} calls",
        value=round(p95, 3),
        threshold=f"<= {limit_ms:g}",
    )
