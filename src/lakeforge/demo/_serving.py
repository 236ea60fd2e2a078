"""Step 8: `lakeforge serve` with feature lookup, a hot swap and the inference table."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace
from lakeforge.demo._data import show, start_lakeforge
from lakeforge.demo._features import FEATURE_MODEL
from lakeforge.errors import LakeforgeError

DEMO_ENDPOINTS = """
endpoints:
  departure_delay:
    served_entities:
      - {model: ml.departure_delay, alias: champion}
    inference_table: {table: serving.departure_delay_requests, flush_interval_s: 1}
    poll_interval_s: 1
    monitor: {problem_type: regression, prediction_col: prediction}
"""


def serve_endpoint(ws: Workspace, console: Console) -> None:
    """Serve the feature-aware model over HTTP: keys in, hot swap, inference table."""
    import json
    import signal
    import socket
    import urllib.error
    import urllib.request

    console.print(
        Rule("8. Online serving: lakeforge serve, feature lookup, hot swap, inference table")
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = ws.project.directory / "serve.log"
    server = start_lakeforge(ws, log.name, "serve", "--port", str(port), "--workers", "2")

    def call(path: str, payload: Any = None) -> tuple[int, Any]:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url + path, data=data)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if call("/health")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise LakeforgeError(f"`lakeforge serve` did not start: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        console.print(f"  lakeforge serve: endpoint departure_delay on {url}, 2 workers")
        keys = [{"origin": o, "hour": 18} for o in ("EWR", "JFK", "LGA")]  # airport and hour
        status, answer = call(
            "/serving-endpoints/departure_delay/invocations", {"dataframe_records": keys}
        )
        shown = ", ".join(
            f"{k['origin']} {p:.1f}" for k, p in zip(keys, answer["predictions"], strict=True)
        )
        console.print(f"  keys only -> weather looked up online -> {status}: {shown} min")
        storm = [k | {"wind_speed": 40.0, "precip": 1.0} for k in keys[:1]]
        status, answer = call("/invocations", {"dataframe_records": storm})
        console.print(
            f"  the same EWR request with wind 40 mph and rain sent in (overrides the store): "
            f"{answer['predictions'][0]:.1f} min"
        )
        status, answer = call("/invocations", {"dataframe_records": [{"hour": 18}]})
        console.print(f"  a request without its keys -> {status}: {answer['message'][:90]}")
        failures, sent = 0, 0
        new = str(max(int(v.version) for v in ws.models.versions(FEATURE_MODEL)))
        ws.models.set_alias(FEATURE_MODEL, "champion", int(new), reason="demo hot swap")
        # 20 more requests once a worker swapped; a busy machine may take minutes to load v2
        deadline, after = time.monotonic() + 300, 0
        while after < 20:
            if time.monotonic() > deadline:
                raise LakeforgeError(f"the endpoint did not swap to v{new} in 300 s: see {log}")
            status, _ = call("/invocations", {"dataframe_records": keys})
            sent, failures = sent + 1, failures + (status != 200)
            version = call("/health")[1]["entities"]["departure_delay/departure_delay-champion"]
            after += version.get("version") == new
        console.print(
            f"  champion moved to v{new}: swapped while serving, {sent} requests, {failures} failed"
        )
    finally:
        server.send_signal(signal.SIGTERM)  # drains, then flushes the inference log
        server.wait(timeout=60)
    show(
        console,
        ws,
        "Inference table (every request, flushed from the spool on shutdown)",
        """
        SELECT model_version, status_code, count(*) AS requests,
               round(median(execution_time_ms), 2) AS median_ms
        FROM dev.serving.departure_delay_requests GROUP BY ALL ORDER BY ALL""",
    )
