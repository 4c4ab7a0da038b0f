"""The orchestrator's hot path: lock a run, append an event, upsert step rows, update the run, add ledger rows.

Three implementations of the same operations. ``Writes`` uses SQLAlchemy Core with statements built once (any
database). ``PostgresWrites`` sends plain SQL through the transaction's own psycopg connection and pipelines a
transaction's writes with its COMMIT (one network round trip instead of five). ``SqliteWrites`` sends plain SQL
through the transaction's own sqlite3 connection, its values converted by the columns' own SQLAlchemy types (so
the stored text is what SQLAlchemy writes and reads back). Both exist for one reason: SQLAlchemy's per-statement
work cost more than the statements themselves (docs/benchmarks.md has the figures). All write the same rows; the
runtime tests run on both databases, and tests/test_writes.py compares the rows the plain paths write with
SQLAlchemy's.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.json import Json
from sqlalchemy.dialects import postgresql, sqlite

from engine.store.tables import run_events, run_steps, runs

STEP_KEY = ("run_id", "run_attempt", "key", "attempt")
#: one recorded event's writes: the event row, the changed step rows, the run id and the run's new values
Pending = tuple[dict[str, Any], list[dict[str, Any]], str, dict[str, Any]]
#: a plain row to insert with a transaction's events (a C-ION ledger line): the table and the row
Insert = tuple[sa.Table, dict[str, Any]]
StepRow = tuple[str, int, str, int]  # a step attempt's row key: run id, run attempt, step key, attempt (STEP_KEY)
JSON_COLUMNS = frozenset({"error", "logs", "usage", "outputs", "data", "trigger", "input"})


def upsert(postgres: bool, table: sa.Table, keys: tuple[str, ...], columns: tuple[str, ...] | None = None) -> Any:
    dialect = postgresql if postgres else sqlite
    stmt = dialect.insert(table)
    names = columns if columns is not None else tuple(c.name for c in table.columns if c.name != "id")
    update = [c for c in names if c not in keys]
    return stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})


class Conflict(Exception):
    """Another transaction recorded an event of the same run first (its ``run_events`` sequence number is taken)."""


class Writes:
    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self._statements: dict[Any, Any] = {}

    def statement(self, key: Any, build: Callable[[], Any]) -> Any:
        """Statements built once and reused: building SQLAlchemy constructs costs more than running them."""
        stmt = self._statements.get(key)
        if stmt is None:
            stmt = self._statements[key] = build()
        return stmt

    def lock(self, conn: sa.Connection, run_id: str) -> Any:
        """The run's row (seq, version_id, parent_run_id, parent_step), locked for this transaction, or None."""

        def build() -> Any:
            query = sa.select(runs.c.seq, runs.c.version_id, runs.c.parent_run_id, runs.c.parent_step).where(
                runs.c.id == sa.bindparam("_id")
            )
            return query.with_for_update() if self.postgres else query

        return conn.execute(self.statement("lock", build), {"_id": run_id}).first()

    def insert(self, conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> None:
        """One row now, not with the flush: later statements of the transaction refer to it (a run's row)."""
        conn.execute(self.statement(("insert", table.name), table.insert), row)

    def claim(self, conn: sa.Connection, step: StepRow, worker_id: str, *, mine_too: bool) -> bool:
        """Mark a step attempt's row claimed by ``worker_id`` unless another worker holds it (one by this worker
        counts as free when ``mine_too``: a claim left by a step this process gave up); True if it now holds it.
        The last statement of its transaction (on PostgreSQL it commits it)."""

        def build() -> Any:
            free = sa.or_(
                run_steps.c.state.is_distinct_from("claimed"),
                sa.and_(run_steps.c.worker_id == sa.bindparam("worker"), sa.bindparam("mine_too")),
            )
            return (
                run_steps.update()
                .where(*(run_steps.c[name] == sa.bindparam(f"_{name}") for name in STEP_KEY), free)
                .values(state="claimed", worker_id=sa.bindparam("worker"))
                .returning(run_steps.c.attempt)
            )

        values = {f"_{name}": value for name, value in zip(STEP_KEY, step, strict=True)}
        found = conn.execute(self.statement("claim", build), {**values, "worker": worker_id, "mine_too": mine_too})
        return found.first() is not None

    def flush(self, conn: sa.Connection, pending: list[Pending], inserts: list[Insert] | None = None) -> None:
        """Write the events a transaction recorded, then its plain rows (called last, just before the commit)."""
        try:
            for event, rows, run_id, run in pending:
                self.record(conn, event, rows, run_id, run)
            for table, row in inserts or ():
                conn.execute(self.statement(("insert", table.name), table.insert), row)
        except sa.exc.IntegrityError as e:
            raise Conflict(str(e)) from e

    def record(
        self, conn: sa.Connection, event: dict[str, Any], rows: list[dict[str, Any]], run_id: str, run: dict[str, Any]
    ) -> None:
        """Update the run, append the event, upsert the step rows: one event's writes.

        The run's row first: a transaction that did not lock it beforehand (Orchestrator.complete's optimistic
        path) then takes the row lock before the event's sequence number, in the same order as everyone else.
        """
        stmt = self.statement(("run", tuple(run)), lambda: runs.update().where(runs.c.id == sa.bindparam("_id")))
        conn.execute(stmt, {**run, "_id": run_id})
        conn.execute(self.statement("event", run_events.insert), event)
        for row in rows:
            columns = tuple(row)
            stmt = self.statement(("step", columns), lambda c=columns: upsert(self.postgres, run_steps, STEP_KEY, c))  # type: ignore[misc]
            conn.execute(stmt, row)


class PostgresWrites(Writes):
    def __init__(self) -> None:
        super().__init__(postgres=True)
        self._sql: dict[Any, str] = {}

    def lock(self, conn: sa.Connection, run_id: str) -> Any:
        raw = _raw(conn)
        try:
            # in a pipeline, psycopg's implicit BEGIN travels with the query: one round trip, not two
            with raw.pipeline(), raw.cursor() as cursor:
                cursor.execute(
                    "SELECT seq, version_id, parent_run_id, parent_step FROM runs WHERE id = %s FOR UPDATE", (run_id,)
                )
                row = cursor.fetchone()
        except psycopg.OperationalError as e:
            raise sa.exc.OperationalError("lock", None, e) from e
        if row is None:
            return None
        return _Row(*row)

    def insert(self, conn: sa.Connection, table: sa.Table, row: dict[str, Any]) -> None:
        """As Writes.insert, in a pipeline: a transaction's implicit BEGIN travels with it (one round trip)."""
        raw = _raw(conn)
        row = {**_defaults(table), **row}  # plain SQL: the columns' client-side defaults are ours to apply
        try:
            with raw.pipeline(), raw.cursor() as cursor:
                cursor.execute(self._insert(table.name, tuple(row)), _adapt(row))
        except psycopg.errors.IntegrityError as e:
            raise sa.exc.IntegrityError("insert", None, e) from e
        except psycopg.OperationalError as e:
            raise sa.exc.OperationalError("insert", None, e) from e

    def claim(self, conn: sa.Connection, step: StepRow, worker_id: str, *, mine_too: bool) -> bool:
        """As Writes.claim, sent with the transaction's COMMIT in one pipeline: one round trip for both."""
        raw = _raw(conn)
        where = " AND ".join(f"{name} = %({name})s" for name in STEP_KEY)
        sql = (
            f"UPDATE run_steps SET state = 'claimed', worker_id = %(worker)s WHERE {where} AND "
            "(state IS DISTINCT FROM 'claimed' OR (worker_id = %(worker)s AND %(mine_too)s)) RETURNING attempt"
        )
        try:
            with raw.pipeline(), raw.cursor() as cursor:
                cursor.execute(
                    sql, {**dict(zip(STEP_KEY, step, strict=True)), "worker": worker_id, "mine_too": mine_too}
                )
                raw.commit()
                return cursor.fetchone() is not None
        except psycopg.OperationalError as e:
            raise sa.exc.OperationalError("claim", None, e) from e

    def flush(self, conn: sa.Connection, pending: list[Pending], inserts: list[Insert] | None = None) -> None:
        """All of the transaction's event writes and its COMMIT in one pipeline: one network round trip.

        (SQLAlchemy's own commit that follows finds the transaction closed, which psycopg treats as a no-op.)
        """
        if not pending and not inserts:
            return
        raw = _raw(conn)
        try:
            with raw.pipeline(), raw.cursor() as cursor:
                for event, rows, run_id, run in pending:  # same order as Writes.record, for the same reason
                    cursor.execute(self._update_run(tuple(run)), {**_adapt(run), "_id": run_id})
                    cursor.execute(self._insert("run_events", tuple(event)), _adapt(event))
                    for row in rows:
                        cursor.execute(self._upsert_step(tuple(row)), _adapt(row))
                for table, row in inserts or ():
                    cursor.execute(self._insert(table.name, tuple(row)), _adapt(row))
                raw.commit()
        except (psycopg.errors.UniqueViolation, psycopg.errors.DeadlockDetected) as e:
            raise Conflict(str(e)) from e
        except psycopg.OperationalError as e:  # the database away: what the retry loops expect from SQLAlchemy
            raise sa.exc.OperationalError("flush", None, e) from e

    def _insert(self, table: str, columns: tuple[str, ...]) -> str:
        key = ("insert", table, columns)
        if key not in self._sql:
            names = ", ".join(columns)
            values = ", ".join(f"%({c})s" for c in columns)
            self._sql[key] = f"INSERT INTO {table} ({names}) VALUES ({values})"
        return self._sql[key]

    def _upsert_step(self, columns: tuple[str, ...]) -> str:
        key = ("step", columns)
        if key not in self._sql:
            update = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in STEP_KEY)
            self._sql[key] = (
                self._insert("run_steps", columns) + f" ON CONFLICT ({', '.join(STEP_KEY)}) DO UPDATE SET {update}"
            )
        return self._sql[key]

    def _update_run(self, columns: tuple[str, ...]) -> str:
        key = ("run", columns)
        if key not in self._sql:
            sets = ", ".join(f"{c} = %({c})s" for c in columns)
            self._sql[key] = f"UPDATE runs SET {sets} WHERE id = %(_id)s"
        return self._sql[key]


class SqliteWrites(Writes):
    def __init__(self) -> None:
        super().__init__(postgres=False)
        self._prepared: dict[Any, tuple[str, tuple[Any, ...]]] = {}

    def flush(self, conn: sa.Connection, pending: list[Pending], inserts: list[Insert] | None = None) -> None:
        """The transaction's writes as plain statements on its own sqlite3 connection (SQLAlchemy commits)."""
        if not pending and not inserts:
            return
        cursor = _raw(conn).cursor()
        try:
            for event, rows, run_id, run in pending:  # same order as Writes.record
                self._run(cursor, conn.dialect, ("run", tuple(run)), runs, (*run, "id"), {**run, "id": run_id})
                self._run(cursor, conn.dialect, ("event", tuple(event)), run_events, tuple(event), event)
                for row in rows:
                    self._run(cursor, conn.dialect, ("step", tuple(row)), run_steps, tuple(row), row)
            for table, row in inserts or ():
                self._run(cursor, conn.dialect, ("insert", table.name, tuple(row)), table, tuple(row), row)
        except sqlite3.IntegrityError as e:
            raise Conflict(str(e)) from e
        except sqlite3.OperationalError as e:  # database locked past the busy timeout: what the retry loops expect
            raise sa.exc.OperationalError("flush", None, e) from e
        finally:
            cursor.close()

    def _run(
        self,
        cursor: sqlite3.Cursor,
        dialect: sa.Dialect,
        key: Any,
        table: sa.Table,
        columns: tuple[str, ...],
        values: dict[str, Any],
    ) -> None:
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = self._prepare(dialect, key[0], table, columns)
        sql, convert = prepared
        cursor.execute(
            sql, [v if f is None else f(v) for f, v in zip(convert, map(values.__getitem__, columns), strict=True)]
        )

    @staticmethod
    def _prepare(
        dialect: sa.Dialect, kind: str, table: sa.Table, columns: tuple[str, ...]
    ) -> tuple[str, tuple[Any, ...]]:
        """The statement's SQL and, per parameter, its column type's own conversion (dates and JSON as text)."""
        convert = tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)
        names = [f'"{c}"' for c in columns]
        if kind == "run":  # columns end with the id the WHERE clause takes
            sets = ", ".join(f"{n} = ?" for n in names[:-1])
            return f'UPDATE "{table.name}" SET {sets} WHERE "id" = ?', convert
        sql = f'INSERT INTO "{table.name}" ({", ".join(names)}) VALUES ({", ".join("?" * len(names))})'
        if kind == "step":
            update = ", ".join(f"{n} = excluded.{n}" for c, n in zip(columns, names, strict=True) if c not in STEP_KEY)
            sql += f" ON CONFLICT ({', '.join(STEP_KEY)}) DO UPDATE SET {update}"
        return sql, convert


class _Row:
    __slots__ = ("parent_run_id", "parent_step", "seq", "version_id")

    def __init__(self, seq: int, version_id: str, parent_run_id: str | None, parent_step: str | None) -> None:
        self.seq, self.version_id, self.parent_run_id, self.parent_step = seq, version_id, parent_run_id, parent_step


def _raw(conn: sa.Connection) -> Any:
    """The transaction's own DBAPI (psycopg) connection: what runs on it is part of the same transaction."""
    return conn.connection.dbapi_connection


@functools.cache  # per table, once: not on every run's start
def _defaults(table: sa.Table) -> dict[str, Any]:
    """The scalar defaults SQLAlchemy would fill in for columns a plain INSERT leaves out."""
    return {c.name: getattr(c.default, "arg", None) for c in table.c if c.default is not None and c.default.is_scalar}


def _adapt(values: dict[str, Any]) -> dict[str, Any]:
    return {k: Json(v) if k in JSON_COLUMNS and v is not None else v for k, v in values.items()}


def writes_for(postgres: bool) -> Writes:
    return PostgresWrites() if postgres else SqliteWrites()
