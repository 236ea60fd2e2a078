"""Step 9: batch scoring of a month of flights, and a stream over new arrivals."""

from __future__ import annotations

import signal
import subprocess
import time

import pyarrow.compute as pc
from rich.console import Console
from rich.rule import Rule

from lakeforge._workspace import Workspace
from lakeforge.demo._data import show, start_lakeforge
from lakeforge.demo._training import FEATURES, MODEL
from lakeforge.errors import LakeforgeError

ARRIVALS = "dev.silver.december_flights"
PREDICTIONS = "dev.gold.late_predictions"
STREAMED = "dev.gold.late_predictions_stream"
KEYS = ["carrier", "flight", "origin", "time_hour"]


def score_flights(ws: Workspace, console: Console) -> None:
    """Score December in batch (twice: nothing doubles), then stream the last week."""
    console.print(Rule("9. Batch and streaming scoring into prediction tables"))
    december = ws.sql(
        f"SELECT {', '.join(KEYS)}, {', '.join(FEATURES)}, day FROM dev.silver.flights "
        "WHERE month = 12 ORDER BY time_hour"
    )
    days = december.column("day")
    first = december.filter(pc.less_equal(days, 24)).drop_columns(["day"])
    ws.tables.write(ARRIVALS, first, mode="overwrite")
    uri = f"models:/{MODEL}@champion"
    result = ws.score(uri, input=ARRIVALS, output=PREDICTIONS, keys=KEYS)
    console.print(
        f"  lakeforge score {MODEL}@champion --input {ARRIVALS}: {result.rows_scored:,} flights "
        f"of 1-24 December scored with v{result.model.version} "
        f"({result.rows_per_s:,.0f} rows/s) into {PREDICTIONS}"
    )
    again = ws.score(uri, input=ARRIVALS, output=PREDICTIONS, keys=KEYS)
    console.print(
        f"  the same run again: {again.rows_scored} new rows ({again.chunks_skipped} chunk(s) "
        "already committed under the run's transaction id)"
    )
    stream = _start_stream(ws, uri)
    try:
        rest = december.filter(pc.greater(days, 24))
        for day in range(25, 32):  # a week of new arrivals, one commit per day
            ws.tables.write(
                ARRIVALS, rest.filter(pc.equal(rest.column("day"), day)).drop_columns(["day"])
            )
        _wait_for(ws, stream, first.num_rows + rest.num_rows)
    finally:
        stream.send_signal(signal.SIGTERM)  # finishes the micro-batch under way
        stream.wait(timeout=120)
    console.print(
        f"  lakeforge score --stream kept {STREAMED} up to date while 7 days arrived, "
        "from the change data feed; the checkpoint commits with the output:"
    )
    show(
        console,
        ws,
        "Streamed predictions by input version",
        f"""
        SELECT input_version, change_type, model_version, count(*) AS flights,
               round(avg(prediction), 3) AS late_share
        FROM {STREAMED} GROUP BY ALL ORDER BY input_version""",
    )


def _start_stream(ws: Workspace, uri: str) -> subprocess.Popen[bytes]:
    return start_lakeforge(
        ws,
        "stream.log",
        *("score", uri, "--input", ARRIVALS, "--output", STREAMED, "--keys", ",".join(KEYS)),
        *("--stream", "--interval", "0.5", "--quiet"),
    )


def _wait_for(ws: Workspace, stream: subprocess.Popen[bytes], rows: int) -> None:
    """Until the stream's output holds ``rows`` rows (a busy machine may take minutes)."""
    deadline = time.monotonic() + 300
    while True:
        if ws.tables.exists(STREAMED):
            done = ws.sql(f"SELECT count(*) AS n FROM {STREAMED}").column("n")[0].as_py()
            if done >= rows:
                return
        if stream.poll() is not None or time.monotonic() > deadline:
            log = (ws.project.directory / "stream.log").read_text()[-2000:]
            raise LakeforgeError(f"the scoring stream did not keep up: {log}")
        time.sleep(0.5)
