"""The migrations build exactly the schema the code declares (a model change without a migration fails here),
on SQLite and PostgreSQL, and upgrading a database created by an earlier migration keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from engine.store.db import alembic_config, make_engine, migrate, sqlite_url
from engine.store.tables import metadata
from tests.services import fresh_postgres


def _differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_sqlite_migrations_match_the_tables(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path / "m.db"))
    migrate(engine)
    assert _differences(engine) == []
    migrate(engine)  # idempotent: every process runs it on start
    engine.dispose()


def test_postgres_migrations_match_the_tables() -> None:
    with fresh_postgres() as url:
        engine = make_engine(url)
        migrate(engine)
        assert _differences(engine) == []
        engine.dispose()


def test_upgrading_from_the_first_schema_keeps_the_steps_recorded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = make_engine(sqlite_url(path))
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    with sqlite3.connect(path) as raw:  # foreign keys off: one step row is enough to see it survive
        raw.execute(
            "INSERT INTO run_steps (run_id, run_attempt, key, attempt, node_id, status, cost_cion, reused)"
            " VALUES ('r', 1, 'a', 1, 'a', 'succeeded', 0.5, 0)"
        )
    raw.close()
    migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT cost_cion, usage FROM run_steps WHERE run_id = 'r'")).one()
    assert tuple(row) == (0.5, None)
    engine.dispose()


@pytest.mark.parametrize(
    ("revision", "table", "column"),
    [
        ("0008", "flows", "webhook_tokens"),
        ("0007", "run_steps", "input_ref"),
        ("0005", "owners", None),
        ("0005", "flows", "owner_id"),
        ("0002", "wasm_modules", None),
        ("0001", "run_steps", "usage"),
    ],
)
def test_downgrade_reverses_each_migration(tmp_path: Path, revision: str, table: str, column: str | None) -> None:
    engine = make_engine(sqlite_url(tmp_path / "d.db"))
    migrate(engine)
    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        if column is None:
            assert table not in inspector.get_table_names()
        else:
            assert column not in {c["name"] for c in inspector.get_columns(table)}
    engine.dispose()
