"""A runtime checkpoints SQLite's write-ahead log after a number of commits, not on a clock (store.db.Checkpoints):
reads do not count, and a checkpoint really copies the log into the database file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlalchemy as sa

from engine.store.db import Checkpoints, make_engine, reading, sqlite_url


def in_database_file(path: Path) -> list[int]:
    """The rows the database file itself holds, the log ignored (``immutable``: SQLite reads the file only)."""
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT x FROM t ORDER BY x")]
        except sqlite3.OperationalError:  # the table itself is still only in the log
            return []


def test_the_log_is_checkpointed_after_enough_commits_and_reads_do_not_count(tmp_path: Path) -> None:
    # Given a database and a checkpoint policy of three commits
    path = tmp_path / "ionflux.db"
    engine = make_engine(sqlite_url(path))
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    checkpoints = Checkpoints(engine, every=3)

    # When two commits and some reads happen, then no checkpoint is due and the rows are only in the log
    for x in (1, 2):
        with engine.begin() as conn:
            conn.exec_driver_sql(f"INSERT INTO t VALUES ({x})")
        with reading(engine) as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == x
    assert not checkpoints.due() and not checkpoints.run_if_due()
    assert in_database_file(path) == []

    # When one commit more has happened, then a checkpoint is due, runs, and the file holds every row
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (3)")
    assert checkpoints.due() and checkpoints.run_if_due()
    assert in_database_file(path) == [1, 2, 3]
    assert not checkpoints.due()  # counted again from zero
    engine.dispose()


def test_postgresql_needs_no_checkpoints() -> None:
    engine = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # never connected
    checkpoints = Checkpoints(engine, every=1)
    assert not checkpoints.due()
    engine.dispose()
