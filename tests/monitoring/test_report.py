"""The HTML report: self-contained, one chart per feature, every value escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import pyarrow as pa

from lakeforge.monitoring._alerts import AlertTransition
from lakeforge.monitoring._report import render_report
from tests.monitoring.alert_helpers import DRIFT, PROFILE, drift_rows, profile_rows

HOSTILE = '<script>alert("x")</script>'


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.titles: list[str] = []
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_h3 = tag == "h3"
        self.links += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href")]

    def handle_data(self, data: str) -> None:
        if self._in_h3:
            self.titles.append(data)
            self._in_h3 = False


def report(inference: bool = False) -> str:
    drift = pa.Table.from_pylist(
        drift_rows([0.0, 0.05, 0.3])
        + drift_rows([0.01, 0.02, 0.03], column="distance")
        + drift_rows([0.5, 0.6, 0.7], column=HOSTILE),
        schema=DRIFT,
    )
    profile = pa.Table.from_pylist(profile_rows([0.9, 0.85, 0.6]), schema=PROFILE)
    history = [
        AlertTransition(
            monitor="flights",
            rule="drift_<b>",
            seq=1,
            previous="ok",
            state="triggered",
            metric="drift_score",
            column_name=HOSTILE,
            comparator=">=",
            threshold=0.1,
            value=0.7,
            breaches=1,
            windows="1 of last 1",
            window_start=datetime(2026, 1, 3, tzinfo=UTC),
            window_end=datetime(2026, 1, 4, tzinfo=UTC),
            event_id=1,
            at=datetime(2026, 1, 4, tzinfo=UTC),
        )
    ]
    return render_report(f"flights{HOSTILE}", profile, drift, history, inference=inference)


def test_report_is_self_contained_and_charts_every_feature() -> None:
    html = report()
    parsed = Tags()
    parsed.feed(html)
    assert "script" not in parsed.tags  # the hostile names did not become elements
    assert "b" not in parsed.tags
    assert not [link for link in parsed.links if re.match(r"\s*(https?:)?//", link)]
    assert not re.search(r"https?://", html)
    assert set(parsed.titles) >= {"dep_delay", "distance", HOSTILE, "accuracy_score"}
    assert parsed.tags.count("svg") == 4  # three features' drift, one quality metric
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "Alert history" in html and "drift_&lt;b&gt;" in html
    assert "Serving health" not in html
    assert 'class="drift">drift<' in html  # the hostile column drifted in the latest window


def test_report_of_a_monitor_without_metrics() -> None:
    html = render_report("empty", None, None, [], inference=True)
    assert "no drift metrics yet" in html and "no requests yet" in html
    assert "no alert has triggered" in html
