"""Shared fixtures: a fresh project per test, real flights data, a real PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
import sqlalchemy as sa

import lakeforge
from lakeforge import Workspace
from lakeforge.demo import flights_data_dir, load_flights

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.pop("LAKEFORGE_TARGET", None)

PG_ADMIN_URL = os.environ.get(
    "LAKEFORGE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    return lakeforge.init_project("testproj", tmp_path)


@pytest.fixture
def ws(project_dir: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=project_dir) as workspace:
        yield workspace


@pytest.fixture(scope="session")
def all_flights() -> pa.Table:
    return load_flights()


@pytest.fixture
def flights(all_flights: pa.Table) -> pa.Table:
    """The real flights of January 1st and 2nd, 2013 (1,785 rows)."""
    first_days = pc.and_(
        pc.equal(all_flights.column("month"), 1), pc.less_equal(all_flights.column("day"), 2)
    )
    return all_flights.filter(first_days)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the machine's server, dropped afterwards."""
    name = f"lf_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - CI starts the server
        pytest.fail(
            f"PostgreSQL at 127.0.0.1:5432 does not answer ({exc.orig}); run .ci/services.sh"
        )
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def git_init(folder: Path) -> str:
    """Make ``folder`` a git checkout with one commit; return the commit."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    steps = (["init", "-q"], ["branch", "-M", "main"], ["add", "-A"])
    # `lakeforge init` may have committed already: this commit may then be empty
    for args in (*steps, ["commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=folder, check=True, env=env)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=folder, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def ml_project(tmp_path_factory: pytest.TempPathFactory, all_flights: pa.Table) -> Path:
    """One project for the MLflow tests (store creation is slow): git-committed, with flights."""
    folder = lakeforge.init_project("mlproj", tmp_path_factory.mktemp("ml"))
    git_init(folder)
    with lakeforge.connect("dev", project_dir=folder) as ws:
        ws.tables.write("dev.silver.flights", all_flights.slice(0, 20_000))
    return folder


@pytest.fixture
def ml_ws(ml_project: Path) -> Iterator[Workspace]:
    with lakeforge.connect("dev", project_dir=ml_project) as workspace:
        yield workspace


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a server started with ``start_new_session=True`` and every process it spawned."""
    import signal

    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # workers may outlive the leader
            os.killpg(process.pid, signal.SIGKILL)
        break


def january_weather(all_flights: pa.Table) -> tuple[pa.Table, pa.Table]:
    """January's mean temp and wind speed per (origin, time_hour), and its flights that have
    an arrival delay: a feature table and the labels to look it up for."""
    weather = pacsv.read_csv(flights_data_dir() / "weather.csv")
    weather = weather.filter(pc.equal(weather.column("month"), 1))
    weather = (
        weather.group_by(["origin", "time_hour"])
        .aggregate([("temp", "mean"), ("wind_speed", "mean")])
        .rename_columns(["origin", "time_hour", "temp", "wind_speed"])
    )
    flights = all_flights.filter(pc.equal(all_flights.column("month"), 1))
    return weather, flights.filter(pc.is_valid(flights.column("arr_delay")))
