"""One ingest stream per table: concurrent runs, kill -9 of either, then a rerun load
every file exactly once (SQLite and PostgreSQL state stores)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import lakeforge
from lakeforge.errors import IngestError
from lakeforge.lakehouse import Ingestor
from lakeforge.state import Heartbeat, Lease

FILES, ROWS, TRIALS = 8, 2_000, 5

INGEST_SCRIPT = """
import json, pathlib, sys, time
import lakeforge
from lakeforge.lakehouse import Ingestor
project, source, table, go, options = sys.argv[1:]
ws = lakeforge.connect("dev", project_dir=project)
ws.state.connect_engine()
while not pathlib.Path(go).exists():  # start together with the other run
    time.sleep(0.002)
report = Ingestor(ws.tables, ws.state).run(source, table, batch_bytes=1, **json.loads(options))
print("loaded", len(report.loaded))
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A project whose dev target keeps its state in SQLite or in PostgreSQL (migrated)."""
    if request.param == "sqlite":
        folder = lakeforge.init_project("conc", tmp_path / "project")
    else:
        url = request.getfixturevalue("pg_url")
        folder = tmp_path / "project"
        folder.mkdir()
        (folder / "lakeforge.yaml").write_text(
            f"name: conc\ntargets:\n  dev:\n    state_store: {url}\n"
        )
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.state.migrate()  # before the runs start: this test is about ingestion
    return folder


def landing(folder: Path) -> Path:
    """``FILES`` CSV files of ``ROWS`` rows each, with ids unique across files."""
    folder.mkdir(parents=True)
    for f in range(FILES):
        ids = list(range(f * ROWS, (f + 1) * ROWS))
        pacsv.write_csv(
            pa.table({"id": ids, "file": [f] * ROWS, "value": [i * 0.5 for i in ids]}),
            folder / f"part_{f:02d}.csv",
        )
    return folder


def assert_exactly_once(project: Path, source: Path, table: str) -> None:
    with lakeforge.connect("dev", project_dir=project) as ws:
        ws.ingest(source, table)  # the final rerun: waits out any dead holder, repairs
        data = ws.tables.read(table, columns=["id", "_ingest_file"])
        assert data.num_rows == FILES * ROWS
        assert len(set(data.column("id").to_pylist())) == FILES * ROWS
        per_file = Counter(data.column("_ingest_file").to_pylist())
        assert per_file == {str(p): ROWS for p in sorted(source.glob("*.csv"))}
        checkpoint = Ingestor(ws.tables, ws.state).checkpoint(table)
        assert sorted(r["path"] for r in checkpoint) == sorted(str(p) for p in per_file)
        assert {r["status"] for r in checkpoint} == {"loaded"}


def cli(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from lakeforge.cli import main; main()", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def start_two(
    project: Path, source: Path, table: str, go: Path, **options: object
) -> list[subprocess.Popen[str]]:
    """Two ingest processes into ``table`` (one commit per file), released together."""
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                INGEST_SCRIPT,
                str(project),
                str(source),
                table,
                str(go),
                json.dumps(options),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    go.touch()
    return runs


@pytest.mark.slow
def test_two_ingests_at_once_load_every_row_once(project: Path, tmp_path: Path) -> None:
    source = landing(tmp_path / "in")
    for trial in range(TRIALS):
        table = f"dev.bronze.events_{trial}"
        runs = start_two(project, source, table, tmp_path / f"go{trial}")
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        loaded = sorted(int(out.rsplit("loaded ", 1)[1]) for out in outputs)
        assert loaded == [0, FILES], outputs  # one run loaded all; the other found them done
        assert_exactly_once(project, source, table)


@pytest.mark.slow
def test_kill_9_of_either_concurrent_ingest_then_rerun_loads_each_file_once(
    project: Path, tmp_path: Path
) -> None:
    source = landing(tmp_path / "in")
    chance = random.Random(11)
    for trial in range(TRIALS):
        table = f"dev.bronze.events_{trial}"
        runs = start_two(project, source, table, tmp_path / f"go{trial}", lease_s=2)
        victim = runs[trial % 2]
        try:
            victim.wait(timeout=chance.uniform(0.3, 3.0))
        except subprocess.TimeoutExpired:
            os.killpg(victim.pid, signal.SIGKILL)
        for run in runs:
            run.communicate(timeout=300)
        assert_exactly_once(project, source, table)


def test_no_wait_names_the_live_holder(project: Path, tmp_path: Path) -> None:
    source = landing(tmp_path / "in")
    table = "dev.bronze.events"
    with lakeforge.connect("dev", project_dir=project) as ws:
        other = Lease(
            ws.state, f"ingest:{table}", duration=timedelta(seconds=1), owner="otherhost:4242:ab"
        )
        assert other.acquire()
        with Heartbeat(other):  # alive: renewed, so never taken over, however long it runs
            threading.Event().wait(2.5)
            with pytest.raises(IngestError) as info:
                ws.ingest(source, table, wait=False)
            message = str(info.value)
            assert f"another ingestion into {table} is running" in message
            assert "pid 4242 on host otherhost" in message and "lease held until" in message
            run = cli(project, "ingest", str(source), "--into", table, "--no-wait")
            output = " ".join(run.communicate(timeout=120)[0].split())  # unwrap Rich's lines
            assert run.returncode == 1 and "pid 4242 on host otherhost" in output, output
        assert not ws.tables.exists(table)
        assert ws.ingest(source, table, wait=False).rows == FILES * ROWS  # released on exit


def test_a_waiting_ingest_runs_once_the_holder_releases(project: Path, tmp_path: Path) -> None:
    source = landing(tmp_path / "in")
    table = "dev.bronze.events"
    with lakeforge.connect("dev", project_dir=project) as ws:
        other = Lease(ws.state, f"ingest:{table}", duration=timedelta(seconds=60))
        assert other.acquire()
        waits: list[str] = []
        released = threading.Timer(1.0, other.release)
        released.start()
        try:
            report = ws.ingest(source, table, progress=lambda p: waits.append(p.activity))
        finally:
            released.cancel()
        assert report.rows == FILES * ROWS
        assert any(name.startswith("waiting for pid") for name in waits)
