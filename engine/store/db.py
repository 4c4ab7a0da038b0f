"""Connections and migrations: a SQLite file by default, PostgreSQL when the URL says so.

SQLite is tuned for one embedded process with worker threads: WAL (readers never block the writer),
``synchronous=NORMAL`` (a commit survives a process crash; only an OS crash can lose the last commits), and every
transaction starts ``BEGIN IMMEDIATE`` so two threads never deadlock upgrading a read lock to a write lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
WAL_AUTOCHECKPOINT_PAGES = 10_000  # 40 MB of 4 KiB pages (SQLite's default is 1,000)
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
CHECKPOINT_COMMITS = 500  # a runtime checkpoints after this many commits (Checkpoints): a few thousand log pages
READ_ONLY = "ionflux_read_only"  # the execution option reading() sets


def normalise_url(url: str) -> str:
    """Accept the URLs users paste (``postgres://``, ``postgresql://``) and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str, *, pool_size: int = 10) -> sa.Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # A commit that crosses the auto-checkpoint threshold runs the checkpoint itself (two fsyncs, ~20 ms on
            # a VM), in the middle of a step. A started runtime checkpoints from its ticker instead (Checkpoints
            # below), so this threshold is only a bound for processes that do not (or a burst).
            cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")  # the WAL shrinks back after one
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            deferred = conn.get_execution_options().get(READ_ONLY)  # reading(): no write lock to take or wait for
            # on the driver's connection: through SQLAlchemy's statement machinery this cost ~0.1 ms per transaction
            conn.connection.driver_connection.execute("BEGIN" if deferred else "BEGIN IMMEDIATE")  # type: ignore[union-attr]

        return engine
    # no pool_pre_ping (a round trip per checkout): after a database restart the first use of a pooled connection
    # fails, SQLAlchemy invalidates the pool, and the runtime's retry loop (engine.runtime.runtime.retrying) goes on
    return sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size)


@contextmanager
def reading(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for reading only. On SQLite its transaction starts with a plain (deferred) BEGIN, so it neither
    takes the write lock nor waits for it. Why it matters: the runtime's pollers (timers, the trigger inbox, a
    waiter) read several times a second, and a transaction holds its lock between statements, which under a
    CPU-bound step (holding the GIL; a thread gets it back only every 5 ms) lasted milliseconds, making the step's
    own commit wait. A write on this connection would fail on SQLite (no upgrade from a stale snapshot)."""
    with engine.connect() as conn:
        conn.execution_options(**{READ_ONLY: True})
        yield conn


def checkpoint(engine: sa.Engine) -> None:
    """Copy the SQLite write-ahead log into the database file without blocking anyone (PASSIVE): what a commit
    would otherwise do when the log reaches its threshold. Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]


class Checkpoints:
    """When a runtime's ticker checkpoints: after ``every`` commits since the last one (SQLite only).

    Not on a clock: the first commit after a checkpoint restarts the log, and with ``synchronous=NORMAL`` that
    commit syncs the log's header (an fsync). Checkpointing every second put that fsync in the commit of nearly
    every step of a slow flow (after a 0.8-s step body, 1.67-1.84 ms per record instead of 1.00 without those
    checkpoints; docs/benchmarks.md); counted, it is paid once per ``every`` commits, and the log stays a few MB."""

    def __init__(self, engine: sa.Engine, every: int = CHECKPOINT_COMMITS) -> None:
        self.engine = engine
        self.every = every
        self.commits = 0
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "commit", self._committed)

    def _committed(self, _conn: sa.Connection) -> None:
        self.commits += 1  # from many threads: an approximate count is all this needs

    def due(self) -> bool:
        return self.commits >= self.every

    def run_if_due(self) -> bool:
        if not self.due():
            return False
        self.commits = 0
        checkpoint(self.engine)
        return True


def is_postgres(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def alembic_config(engine: sa.Engine) -> Config:
    from alembic.config import Config  # imported when migrating only: it costs half a second

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration (idempotent; safe to call on every start)."""
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def utc(value: datetime | None) -> datetime | None:
    """Datetimes back from SQLite are naive (it has no time zone type); everything stored is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
