"""One self-contained HTML report per monitor: inline SVG charts, no script, no CDN.

Drift over time per column (score per window, and the threshold), model quality over
time, serving health (inference monitors) and the alert history. Every value read from
the tables (column names included) is HTML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from lakeforge.project import HEALTH_METRICS, QUALITY_METRICS, WINDOW_SIZES

if TYPE_CHECKING:
    from lakeforge._workspace import Workspace
    from lakeforge.monitoring._alerts import AlertTransition

_COLORS: Final = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
_W, _H, _PAD = 640, 180, 40
_STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:.9em;text-align:left}th{background:#f4f4f4}.drift{color:#b00;font-weight:bold}
.chart{display:inline-block;margin:.5em 1em .5em 0}.chart h3{font-size:.95em;margin:0}
svg text{font-size:10px;fill:#555}.muted{color:#777}
"""


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return escape(str(value), quote=True)


def line_chart(
    title: str,
    xs: Sequence[datetime],
    series: Mapping[str, Sequence[float | None]],
    *,
    threshold: float | None = None,
) -> str:
    """An inline SVG line chart of ``series`` over ``xs`` (one line each; a dashed threshold)."""
    values = [v for ys in series.values() for v in ys if v is not None and math.isfinite(v)]
    if threshold is not None:
        values.append(threshold)
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        low, high = low - 0.5, high + 0.5
    width, height = _W - 2 * _PAD, _H - 2 * _PAD
    n = len(xs)

    def x(i: int) -> float:
        return _PAD + (width * i / (n - 1) if n > 1 else width / 2)

    def y(v: float) -> float:
        return _PAD + height * (1 - (v - low) / (high - low))

    parts = [
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img">',
        f'<rect x="{_PAD}" y="{_PAD}" width="{width}" height="{height}" fill="#fafafa" '
        'stroke="#ccc"/>',
        f'<text x="2" y="{_PAD + 4}">{_text(high)}</text>',
        f'<text x="2" y="{_PAD + height}">{_text(low)}</text>',
    ]
    if n:
        parts.append(f'<text x="{_PAD}" y="{_H - 8}">{_text(xs[0])}</text>')
        parts.append(f'<text x="{_W - _PAD}" y="{_H - 8}" text-anchor="end">{_text(xs[-1])}</text>')
    if threshold is not None:
        parts.append(
            f'<line x1="{_PAD}" x2="{_W - _PAD}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
            'stroke="#b00" stroke-dasharray="4 3"><title>threshold '
            f"{_text(threshold)}</title></line>"
        )
    for index, (name, ys) in enumerate(series.items()):
        color = _COLORS[index % len(_COLORS)]
        shown = [(i, v) for i, v in enumerate(ys) if v is not None and math.isfinite(v)]
        if len(shown) > 1:
            line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in shown)
            parts.append(f'<polyline points="{line}" fill="none" stroke="{color}"/>')
        for i, v in shown:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"><title>'
                f"{_text(name)} {_text(xs[i])}: {_text(v)}</title></circle>"
            )
        parts.append(
            f'<text x="{_PAD + 4 + 110 * index}" y="{_PAD - 6}" fill="{color}">{_text(name)}</text>'
        )
    parts.append("</svg>")
    return f'<div class="chart"><h3>{_text(title)}</h3>{"".join(parts)}</div>'


def _whole(table: pa.Table | None) -> pa.Table | None:
    """The rows of the whole table (no slice), at the finest granularity."""
    if table is None or table.num_rows == 0:
        return None
    rows = table.filter(pc.is_null(table.column("slice_key")))
    present = set(rows.column("granularity").to_pylist())
    if not present:
        return None
    finest = min(present, key=lambda g: WINDOW_SIZES.index(g) if g in WINDOW_SIZES else 99)
    return rows.filter(pc.equal(rows.column("granularity"), finest))


@dataclass(frozen=True)
class WindowView:
    """One window of a monitor's metrics, whole table: drift per column and quality."""

    start: datetime
    end: datetime
    granularity: str
    drift_type: str | None
    drift: list[dict[str, Any]]  # per column: column_name, drift_method, drift_score, ...
    table: dict[str, Any]  # the ':table' profile row (counts, quality, serving health)


def window_view(
    profile: pa.Table | None, drift: pa.Table | None, *, window: str | None = None
) -> WindowView | None:
    """The newest window (or the one whose start begins with ``window``, e.g. ``2026-01-03``)
    at the finest granularity; ``None`` before the first refresh or for an unknown window."""
    profile_rows, drift_rows = _whole(profile), _whole(drift)
    keys = sorted(
        {
            (r["window_start"], r["window_end"], r["granularity"])
            for rows in (profile_rows, drift_rows)
            if rows is not None
            for r in rows.select(["window_start", "window_end", "granularity"]).to_pylist()
        }
    )
    if window is not None:
        keys = [k for k in keys if k[0].isoformat().startswith(window)]
    if not keys:
        return None
    start, end, granularity = keys[-1]
    at = [r for r in (drift_rows.to_pylist() if drift_rows is not None else [])]
    at = [r for r in at if r["window_start"] == start and r["granularity"] == granularity]
    kind = "BASELINE" if any(r["drift_type"] == "BASELINE" for r in at) else None
    kind = kind or ("CONSECUTIVE" if at else None)
    columns = sorted(
        (r for r in at if r["drift_type"] == kind), key=lambda r: str(r["column_name"])
    )
    table = [
        r
        for r in (profile_rows.to_pylist() if profile_rows is not None else [])
        if r["window_start"] == start
        and r["granularity"] == granularity
        and r["column_name"] == ":table"
        and r.get("log_type", "INPUT") == "INPUT"
    ]
    return WindowView(start, end, granularity, kind, columns, table[0] if table else {})


def _drift_section(drift: pa.Table | None) -> str:
    rows = _whole(drift)
    if rows is None:
        return "<p class=muted>no drift metrics yet</p>"
    kinds = set(rows.column("drift_type").to_pylist())
    kind = "BASELINE" if "BASELINE" in kinds else "CONSECUTIVE"
    rows = rows.filter(pc.equal(rows.column("drift_type"), kind)).sort_by("window_start")
    records = rows.to_pylist()
    columns = sorted({r["column_name"] for r in records if r["column_name"] != ":table"})
    starts = sorted({r["window_start"] for r in records})
    latest = [r for r in records if r["window_start"] == starts[-1]] if starts else []
    body = [
        f"<p>Drift against the {'baseline' if kind == 'BASELINE' else 'previous window'}, "
        f"latest window {_text(starts[-1] if starts else None)}.</p>",
        "<table><tr><th>column</th><th>method</th><th>score</th><th>threshold</th>"
        "<th>verdict</th></tr>",
    ]
    for r in sorted(latest, key=lambda r: str(r["column_name"])):
        if r["column_name"] == ":table":
            continue
        verdict = "drift" if r.get("drift_detected") else "ok"
        body.append(
            f"<tr><td>{_text(r['column_name'])}</td><td>{_text(r.get('drift_method'))}</td>"
            f"<td>{_text(r.get('drift_score'))}</td><td>{_text(r.get('drift_threshold'))}</td>"
            f'<td class="{"drift" if verdict == "drift" else ""}">{verdict}</td></tr>'
        )
    body.append("</table>")
    share = [r for r in latest if r["column_name"] == ":table"]
    if share and share[0].get("drift_share") is not None:
        body.append(
            f"<p>Share of drifted columns: {_text(share[0]['drift_share'])} "
            f"(dataset drift: {_text(share[0].get('dataset_drift'))}).</p>"
        )
    for column in columns:
        mine = [r for r in records if r["column_name"] == column]
        thresholds = [r["drift_threshold"] for r in mine if r.get("drift_threshold") is not None]
        body.append(
            line_chart(
                column,
                [r["window_start"] for r in mine],
                {"drift score": [r.get("drift_score") for r in mine]},
                threshold=thresholds[-1] if thresholds else None,
            )
        )
    return "".join(body)


def _metric_charts(profile: pa.Table | None, metrics: Sequence[str], empty: str) -> str:
    rows = _whole(profile)
    if rows is None:
        return f"<p class=muted>{empty}</p>"
    rows = rows.filter(pc.equal(rows.column("column_name"), ":table"))
    if "log_type" in rows.column_names:
        rows = rows.filter(pc.equal(rows.column("log_type"), "INPUT"))
    records = rows.sort_by("window_start").to_pylist()
    charts = []
    for metric in metrics:
        if metric not in rows.column_names:
            continue
        by_version: dict[str, list[tuple[datetime, float | None]]] = {}
        for r in records:
            by_version.setdefault(str(r.get("model_version") or "all"), []).append(
                (r["window_start"], r[metric])
            )
        if all(v is None for points in by_version.values() for _, v in points):
            continue
        xs = sorted({at for points in by_version.values() for at, _ in points})
        series = {
            version: [dict(points).get(at) for at in xs] for version, points in by_version.items()
        }
        charts.append(line_chart(metric, xs, series))
    return "".join(charts) or f"<p class=muted>{empty}</p>"


def _alerts_section(history: Sequence[AlertTransition]) -> str:
    if not history:
        return "<p class=muted>no alert has triggered</p>"
    rows = [
        "<table><tr><th>at</th><th>rule</th><th>state</th><th>metric</th><th>column</th>"
        "<th>value</th><th>threshold</th><th>windows</th><th>window</th></tr>"
    ]
    for t in reversed(history):
        rows.append(
            f"<tr><td>{_text(t.at)}</td><td>{_text(t.rule)}</td>"
            f'<td class="{"drift" if t.state == "triggered" else ""}">{_text(t.state)}</td>'
            f"<td>{_text(t.metric)}</td><td>{_text(t.column_name)}</td><td>{_text(t.value)}</td>"
            f"<td>{_text(t.comparator)} {_text(t.threshold)}</td>"
            f"<td>{_text(t.breaches)} ({_text(t.windows)})</td><td>{_text(t.window_start)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def render_report(
    name: str,
    profile: pa.Table | None,
    drift: pa.Table | None,
    history: Sequence[AlertTransition],
    *,
    inference: bool = False,
) -> str:
    """The HTML of a monitor's report, from its metric tables and alert history."""
    sections = [
        ("Drift over time", _drift_section(drift)),
        (
            "Model quality over time",
            _metric_charts(profile, QUALITY_METRICS, "no labels, no quality"),
        ),
    ]
    if inference:
        sections.append(
            ("Serving health", _metric_charts(profile, HEALTH_METRICS, "no requests yet"))
        )
    sections.append(("Alert history", _alerts_section(history)))
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(f"<h2>{_text(title)}</h2>{html}" for title, html in sections)
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>Monitor {_text(name)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Monitor {_text(name)}</h1><p class=muted>generated {generated}</p>"
        f"{body}</body></html>"
    )


def write_report(ws: Workspace, name: str, path: str | Path) -> Path:
    """Write monitor ``name``'s report to ``path`` (a file, or a folder: ``<name>.html``)."""
    from lakeforge.monitoring import monitor_spec, output_tables
    from lakeforge.monitoring._alerts import alert_history

    spec = monitor_spec(ws, name)
    tables = [
        ws.tables.read(table) if ws.tables.exists(table) else None
        for table in output_tables(ws, name)
    ]
    html = render_report(
        name, tables[0], tables[1], alert_history(ws, name), inference=spec.profile == "inference"
    )
    target = Path(path)
    if target.is_dir():
        target = target / f"{name}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target
