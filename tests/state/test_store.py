"""The state store migrates and works the same on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from lakeforge.errors import ConfigError
from lakeforge.state import StateStore, head_revision, ingest_files


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/state.db"
    return request.getfixturevalue("pg_url")


def test_migrates_to_head_once_and_round_trips_rows(store_url: str) -> None:
    store = StateStore(store_url)
    engine = store.connect_engine()
    assert store.revision() == head_revision()
    assert "ingest_files" in sa.inspect(engine).get_table_names()
    row = {
        "table_name": "dev.bronze.x",
        "path": "/data/a.csv",
        "size": 10,
        "mtime_ns": 1,
        "content_hash": "ab" * 32,
        "status": "loaded",
        "updated_at": datetime.now(UTC),
    }
    with engine.begin() as conn:
        conn.execute(sa.insert(ingest_files), [row])
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.insert(ingest_files), [row])
    store.dispose()
    again = StateStore(store_url)
    again.migrate()  # already at head: a no-op
    with again.connect_engine().connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ingest_files)).scalar() == 1
    again.dispose()


def test_bad_urls_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a SQLAlchemy URL"):
        StateStore("::not a url::")
    with pytest.raises(ConfigError, match="unknown database dialect"):
        StateStore("nosuchdb://x/y")


@pytest.mark.postgres
def test_unreachable_postgres_says_so() -> None:
    store = StateStore("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")
    with pytest.raises(ConfigError, match="cannot reach the state store"):
        store.migrate()


def test_migrations_create_exactly_the_declared_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from lakeforge.state import metadata

    store = StateStore(f"sqlite:///{tmp_path}/s.db")
    with store.connect_engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert [d for d in diff if "lakeforge_alembic_version" not in str(d)] == []
    store.dispose()


def _migrate(url: str) -> str | None:
    store = StateStore(url)
    store.migrate()
    revision = store.revision()
    store.dispose()
    return revision


@pytest.mark.slow
def test_processes_migrating_a_fresh_store_at_once_all_succeed(store_url: str) -> None:
    """Several processes opening a new project's state store at the same moment."""
    import multiprocessing

    for _ in range(3):
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            assert pool.map(_migrate, [store_url] * 4) == [head_revision()] * 4
        if store_url.startswith("sqlite"):
            for file in Path(store_url.removeprefix("sqlite:///")).parent.glob("state.db*"):
                file.unlink()
        else:
            engine = sa.create_engine(store_url)
            with engine.begin() as conn:
                conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            engine.dispose()
