"""Lakehouse monitoring: profile, drift and model-quality metric tables per time window,
alerts on them, and an offline HTML report (Databricks Lakehouse Monitoring's contract).

Names load on first use, so importing the package pulls in no SciPy, DuckDB or pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lakeforge._lazy import lazy_names

if TYPE_CHECKING:
    from lakeforge.monitoring._alerts import (
        AlertState,
        AlertTransition,
        alert_history,
        alert_states,
        evaluate,
    )
    from lakeforge.monitoring._notify import deliver_emails
    from lakeforge.monitoring._refresh import RefreshResult, output_tables, refresh, set_baseline
    from lakeforge.monitoring._registry import (
        MonitorNotFoundError,
        create_monitor,
        delete_monitor,
        list_monitors,
        monitor_spec,
    )
    from lakeforge.monitoring._report import WindowView, render_report, window_view, write_report
    from lakeforge.monitoring._windows import window_end, window_starts, windows_of

_HOME = {
    "AlertState": "_alerts",
    "AlertTransition": "_alerts",
    "alert_history": "_alerts",
    "alert_states": "_alerts",
    "evaluate": "_alerts",
    "RefreshResult": "_refresh",
    "output_tables": "_refresh",
    "refresh": "_refresh",
    "set_baseline": "_refresh",
    "MonitorNotFoundError": "_registry",
    "create_monitor": "_registry",
    "delete_monitor": "_registry",
    "list_monitors": "_registry",
    "monitor_spec": "_registry",
    "deliver_emails": "_notify",
    "WindowView": "_report",
    "render_report": "_report",
    "window_view": "_report",
    "write_report": "_report",
    "window_end": "_windows",
    "window_starts": "_windows",
    "windows_of": "_windows",
}

__getattr__ = lazy_names(__name__, _HOME)

__all__ = [
    "AlertState",
    "AlertTransition",
    "MonitorNotFoundError",
    "RefreshResult",
    "WindowView",
    "alert_history",
    "alert_states",
    "create_monitor",
    "delete_monitor",
    "deliver_emails",
    "evaluate",
    "list_monitors",
    "monitor_spec",
    "output_tables",
    "refresh",
    "render_report",
    "set_baseline",
    "window_end",
    "window_starts",
    "window_view",
    "windows_of",
    "write_report",
]
