"""Incremental, exactly-once ingestion of real flights files into bronze."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import lakeforge
from lakeforge import Workspace
from lakeforge.errors import IngestError, PermissionDeniedError
from lakeforge.lakehouse import Ingestor, IngestProgress, Lakehouse

TABLE = "dev.bronze.flights"


def land(flights: pa.Table, folder: Path, day: int, fmt: str = "csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    part = flights.filter(pc.equal(flights.column("day"), day))
    path = folder / f"flights_{day:02d}.{fmt}"
    if fmt == "csv":
        pacsv.write_csv(part, path)
    elif fmt == "parquet":
        pq.write_table(part, path)
    else:
        path.write_text(part.to_pandas().to_json(orient="records", lines=True, date_format="iso"))
    return path


def count(ws: Workspace) -> int:
    return ws.sql(f"SELECT count(*) AS n FROM {TABLE}").column("n")[0].as_py()


def test_loads_new_files_only_and_reruns_add_nothing(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    first = land(flights, landing, 1)
    report = ws.ingest(landing, TABLE)
    day1 = flights.filter(pc.equal(flights.column("day"), 1)).num_rows
    assert report.loaded == [str(first)] and report.rows == day1 and report.versions == [0]
    assert ws.ingest(landing, TABLE).rows == 0
    land(flights, landing, 2)
    second = ws.ingest(landing, TABLE)
    assert len(second.loaded) == 1 and second.skipped == 1
    assert count(ws) == flights.num_rows
    table = ws.tables.read(TABLE)
    assert set(table.column("_ingest_file").to_pylist()) == {
        str(first),
        str(landing / "flights_02.csv"),
    }
    assert table.schema.field("_ingest_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("time_hour").type == pa.timestamp("us", tz="UTC")


def test_checkpoint_records_path_size_mtime_and_hash(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    path = land(flights, tmp_path / "in", 1)
    ws.ingest(tmp_path / "in", TABLE)
    [row] = Ingestor(ws.tables, ws.state).checkpoint(TABLE)
    stat = path.stat()
    assert row["path"] == str(path) and row["status"] == "loaded"
    assert (row["size"], row["mtime_ns"]) == (stat.st_size, stat.st_mtime_ns)
    assert row["content_hash"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert row["table_version"] == 0 and row["rows"] > 0


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_json_lines_and_parquet(ws: Workspace, flights: pa.Table, tmp_path: Path, fmt: str) -> None:
    land(flights, tmp_path / "in", 1, fmt)
    land(flights, tmp_path / "in", 2, fmt)
    report = ws.ingest(tmp_path / "in", TABLE)
    assert report.rows == flights.num_rows and not report.failed
    assert (
        ws.sql(f"SELECT sum(distance) AS d FROM {TABLE}").column("d")[0].as_py()
        == pc.sum(flights.column("distance")).as_py()
    )


def test_corrupt_csv_is_recorded_failed_and_never_half_loaded(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "in"
    land(flights, landing, 1)
    corrupt = landing / "flights_99.csv"
    header = ",".join(flights.column_names)
    corrupt.write_text(header + "\n2013,1,3,517\n")  # a row with too few fields
    report = ws.ingest(landing, TABLE)
    assert list(report.failed) == [str(corrupt)]
    assert "Expected 19 columns, got 4" in report.failed[str(corrupt)]
    assert count(ws) == flights.filter(pc.equal(flights.column("day"), 1)).num_rows
    rows = {r["path"]: r for r in Ingestor(ws.tables, ws.state).checkpoint(TABLE)}
    assert (
        rows[str(corrupt)]["status"] == "failed"
        and "Expected 19 columns" in rows[str(corrupt)]["error"]
    )
    # a failed file is not ingested: every run tries it again, and reports it while it fails
    again = ws.ingest(landing, TABLE)
    assert list(again.failed) == [str(corrupt)] and again.skipped == 1 and again.rows == 0
    part = flights.filter(pc.equal(flights.column("day"), 2))
    pacsv.write_csv(part, corrupt)
    repaired = ws.ingest(landing, TABLE)
    assert repaired.loaded == [str(corrupt)] and count(ws) == flights.num_rows


def test_type_conflict_fails_the_file_naming_the_column(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "in"
    land(flights, landing, 1)
    ws.ingest(landing, TABLE)
    bad = landing / "flights_bad.csv"
    # one bad value only: with two, which column's error pyarrow's threaded CSV
    # conversion reports first is a race
    row = ["2013", "1", "3", "soon", *["1"] * 14, "2013-01-03T05:00:00Z"]
    bad.write_text(",".join(flights.column_names) + "\n" + ",".join(row) + "\n")
    report = ws.ingest(landing, TABLE)
    assert "dep_time" in report.failed[str(bad)] or "column #3" in report.failed[str(bad)]
    assert "int64" in report.failed[str(bad)]
    assert ws.tables.describe(TABLE).version == 0


def test_new_columns_need_the_opt_in(ws: Workspace, tmp_path: Path) -> None:
    landing = tmp_path / "in"
    landing.mkdir()
    (landing / "a.csv").write_text("id,x\n1,a\n")
    ws.ingest(landing, TABLE)
    (landing / "b.csv").write_text("id,x,y\n2,b,7\n")
    report = ws.ingest(landing, TABLE)
    assert "new column(s) y" in report.failed[str(landing / "b.csv")]
    evolved = ws.ingest(landing, TABLE, evolve_schema=True)
    assert evolved.rows == 1
    assert ws.sql(f"SELECT id, y FROM {TABLE} ORDER BY id").to_pylist() == [
        {"id": 1, "y": None},
        {"id": 2, "y": 7},
    ]


def test_changed_file_is_reported_not_reloaded(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    path = land(flights, tmp_path / "in", 1)
    ws.ingest(tmp_path / "in", TABLE)
    with path.open("a") as handle:
        handle.write("")
    os.utime(path, ns=(1, 10**18))
    report = ws.ingest(tmp_path / "in", TABLE)
    assert report.changed == [str(path)] and report.rows == 0


class Crash(BaseException):
    """Stands for the process dying (kill -9): nothing after it runs."""


def crash_after_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Lakehouse.write

    def write_then_die(self: Lakehouse, *args: Any, **kwargs: Any) -> Any:
        real(self, *args, **kwargs)
        raise Crash

    monkeypatch.setattr(Lakehouse, "write", write_then_die)


def crash_before_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def die(self: Lakehouse, *args: Any, **kwargs: Any) -> Any:
        raise Crash

    monkeypatch.setattr(Lakehouse, "write", die)


@pytest.mark.parametrize("crash", [crash_after_commit, crash_before_commit])
def test_crash_mid_commit_is_repaired_without_duplicates_or_loss(
    project_dir: Path, flights: pa.Table, tmp_path: Path, crash: Any
) -> None:
    landing = tmp_path / "in"
    land(flights, landing, 1)
    land(flights, landing, 2)
    with pytest.MonkeyPatch.context() as patch:
        crash(patch)
        with pytest.raises(Crash), lakeforge.connect("dev", project_dir=project_dir) as doomed:
            doomed.ingest(landing, TABLE)
    with lakeforge.connect("dev", project_dir=project_dir) as ws:
        report = ws.ingest(landing, TABLE)
        assert report.recovered == 1
        assert count(ws) == flights.num_rows
        assert (
            ws.sql(f"SELECT count(DISTINCT _ingest_file) AS n FROM {TABLE}").column("n")[0].as_py()
            == 2
        )
        assert {r["status"] for r in Ingestor(ws.tables, ws.state).checkpoint(TABLE)} == {"loaded"}
        assert ws.ingest(landing, TABLE).rows == 0


def test_retried_commit_with_the_same_transaction_id_is_detected(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    land(flights, tmp_path / "in", 1)
    ws.ingest(tmp_path / "in", TABLE)
    assert ws.tables.delta(TABLE).transaction_version(f"lakeforge-ingest/{TABLE}") == 1


def test_batches_split_large_folders_into_several_commits(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    land(flights, tmp_path / "in", 1)
    land(flights, tmp_path / "in", 2)
    report = Ingestor(ws.tables, ws.state).run(tmp_path / "in", TABLE, batch_bytes=1)
    assert report.versions == [0, 1] and count(ws) == flights.num_rows


def test_bad_sources_and_targets(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        ws.ingest(tmp_path / "nowhere", TABLE)
    (tmp_path / "in").mkdir()
    with pytest.raises(PermissionDeniedError):
        ws.ingest(tmp_path / "in", "prod.bronze.flights")
    (tmp_path / "in" / "_SUCCESS").write_text("")  # a marker: ignored
    (tmp_path / "in" / "notes.txt").write_text("not data")
    report = ws.ingest(tmp_path / "in", TABLE)
    assert report.loaded == [] and list(report.unsupported) == [str(tmp_path / "in" / "notes.txt")]


@pytest.mark.postgres
def test_ingest_with_the_postgres_state_store(
    tmp_path: Path, pg_url: str, flights: pa.Table
) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "lakeforge.yaml").write_text(
        f"name: p\ntargets:\n  dev:\n    state_store: {pg_url}\n"
    )
    land(flights, tmp_path / "in", 1)
    with lakeforge.connect(project_dir=folder) as ws:
        assert ws.state.url.startswith("postgresql")
        assert ws.ingest(tmp_path / "in", TABLE).rows > 0
        assert ws.ingest(tmp_path / "in", TABLE).skipped == 1


def test_kill_9_mid_ingest_then_rerun_loads_every_file_exactly_once(
    project_dir: Path, all_flights: pa.Table, tmp_path: Path
) -> None:
    january = all_flights.filter(pc.equal(all_flights.column("month"), 1))
    landing = tmp_path / "in"
    for day in range(1, 32):
        land(january, landing, day)
    script = (
        "import sys, lakeforge\n"
        "from lakeforge.lakehouse import Ingestor\n"
        "ws = lakeforge.connect('dev', project_dir=sys.argv[1])\n"
        "Ingestor(ws.tables, ws.state).run(sys.argv[2], sys.argv[3], batch_bytes=1, lease_s=2)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script, str(project_dir), str(landing), TABLE])
    log = project_dir / ".lakeforge" / "dev" / "tables" / "bronze" / "flights" / "_delta_log"
    deadline = time.monotonic() + 60
    while (
        time.monotonic() < deadline and len(list(log.glob("*.json"))) < 5 and child.poll() is None
    ):
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    with lakeforge.connect("dev", project_dir=project_dir) as ws:
        committed_before = ws.tables.describe(TABLE).version + 1
        assert 0 < committed_before < 31, "the kill should land mid-ingest"
        report = ws.ingest(landing, TABLE)
        assert len(report.loaded) + report.skipped == 31
        per_file = ws.sql(
            f"SELECT _ingest_file AS f, count(*) AS n FROM {TABLE} GROUP BY 1"
        ).to_pylist()
        expected = {
            str(landing / f"flights_{d:02d}.csv"): january.filter(
                pc.equal(january.column("day"), d)
            ).num_rows
            for d in range(1, 32)
        }
        assert {row["f"]: row["n"] for row in per_file} == expected


def test_wrong_format_then_right_format_loads_every_failed_file(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "in"
    days = [str(land(flights, landing, day)) for day in (1, 2)]
    photo = landing / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0")
    wrong = ws.ingest(landing, TABLE, format="parquet")
    assert sorted(wrong.failed) == [*days, str(photo)] and wrong.loaded == []
    assert not ws.tables.exists(TABLE)
    right = ws.ingest(landing, TABLE)
    assert sorted(right.loaded) == days and right.failed == {} and right.skipped == 0
    assert list(right.unsupported) == [str(photo)]
    assert count(ws) == flights.num_rows
    # the photo failed only under the forced format: it is no longer left failed
    rows = Ingestor(ws.tables, ws.state).checkpoint(TABLE)
    assert sorted((r["path"], r["status"]) for r in rows) == [(d, "loaded") for d in days]
    assert ws.ingest(landing, TABLE).skipped == 2


def test_retry_loads_failed_files_from_their_recorded_paths(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "in"
    land(flights, landing, 1)
    bad = landing / "flights_02.csv"
    bad.write_text(",".join(flights.column_names) + "\n2013,1,2,517\n")
    gone = landing / "flights_03.csv"
    gone.write_text("a,b\n1,2,3\n")
    assert sorted(ws.ingest(landing, TABLE).failed) == [str(bad), str(gone)]
    pacsv.write_csv(flights.filter(pc.equal(flights.column("day"), 2)), bad)
    gone.unlink()
    retried = ws.ingest_retry(TABLE)  # no source needed: the paths are in the checkpoint
    assert retried.loaded == [str(bad)] and count(ws) == flights.num_rows
    assert list(retried.failed) == [str(gone)] and "no longer exists" in retried.failed[str(gone)]
    assert ws.ingest_forget(TABLE, [str(gone)]) == [str(gone)]
    assert ws.ingest_status(TABLE).failed == []
    assert ws.ingest_retry(TABLE).loaded == []


def test_forget_makes_files_load_again_and_refuses_unknown_paths(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "in"
    path = land(flights, landing, 1)
    ws.ingest(landing, TABLE)
    nope = str(tmp_path / "nope.csv")
    with pytest.raises(IngestError, match=f"ingest checkpoint of {TABLE}: {nope}; nothing was"):
        ws.ingest_forget(TABLE, [str(path), nope])
    assert ws.ingest(landing, TABLE).skipped == 1  # nothing was forgotten
    assert ws.ingest_forget(TABLE, [str(landing)]) == [str(path)]  # a folder: all below it
    assert ws.ingest(landing, TABLE).loaded == [str(path)]
    assert count(ws) == 2 * flights.filter(pc.equal(flights.column("day"), 1)).num_rows


def test_status_shows_loaded_failed_and_changed_files(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "in"
    first = land(flights, landing, 1)
    bad = landing / "bad.csv"
    bad.write_text("a,b\n1,2,3\n")
    ws.ingest(landing, TABLE)
    os.utime(first, ns=(1, 10**18))
    status = ws.ingest_status(TABLE)
    [loaded] = status.loaded
    day1 = flights.filter(pc.equal(flights.column("day"), 1)).num_rows
    assert (loaded.path, loaded.rows, loaded.table_version) == (str(first), day1, 0)
    assert loaded.updated_at.tzinfo is not None
    [failed] = status.failed
    assert failed.path == str(bad) and "Expected 2 columns, got 3" in (failed.error or "")
    assert [(f.path, f.change) for f in status.changed] == [
        (str(first), "modified since it was recorded")
    ]


def test_unsupported_files_are_reported_and_a_named_one_is_an_error(
    ws: Workspace, flights: pa.Table, tmp_path: Path
) -> None:
    landing = tmp_path / "in"
    land(flights, landing, 1)
    photo = landing / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0")
    report = ws.ingest(landing, TABLE)
    assert len(report.loaded) == 1 and list(report.unsupported) == [str(photo)]
    assert report.unsupported[str(photo)].startswith(
        "unsupported file type (.jpg); supported: .csv"
    )
    with pytest.raises(IngestError, match=r"cannot ingest .*photo\.jpg: unsupported file type"):
        ws.ingest(photo, TABLE)
    assert ws.ingest(photo, TABLE, format="csv").failed  # forced, it is read (and fails)


def test_progress_counts_files_and_bytes(ws: Workspace, flights: pa.Table, tmp_path: Path) -> None:
    sizes = [land(flights, tmp_path / "in", day).stat().st_size for day in (1, 2)]
    seen: list[IngestProgress] = []
    Ingestor(ws.tables, ws.state).run(tmp_path / "in", TABLE, batch_bytes=1, progress=seen.append)
    total = sum(sizes)
    assert [(p.files_done, p.bytes_done, p.files_total, p.bytes_total) for p in seen] == [
        (0, 0, 2, total),
        (1, sizes[0], 2, total),
        (1, sizes[0], 2, total),
        (2, total, 2, total),
    ]
    assert [p.activity for p in seen] == ["flights_01.csv", "", "flights_02.csv", ""]
