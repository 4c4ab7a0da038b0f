"""The SQLite hot path writes plain SQL; these tests hold it to what SQLAlchemy itself would have stored.

A real run (retries, a logged line, a failure handled with ``on_error: continue``, unicode and nested output,
ledger lines) is recorded through ``SqliteWrites``; every write it flushed is replayed through the SQLAlchemy
implementation (``Writes``) into a second database holding the same flow and run rows; the two databases' rows
must be equal byte for byte, dates and JSON text included.
"""

from __future__ import annotations

import copy
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.core.state import RunStatus
from engine.runtime.writes import Conflict, SqliteWrites, Writes
from engine.store.db import make_engine, migrate, sqlite_url
from tests.runtime_helpers import flow, run_flow, running

RICH = flow(
    """
fluxgraph: 1
id: rich
nodes:
  - id: shaky
    type: test.flaky
    with: {succeed_on: 2, value: "çà ✓ 日本"}
    retry: {max_attempts: 3, backoff: constant, initial_delay: 0s}
  - id: nested
    type: data.set
    needs: [shaky]
    with:
      list: [1, 2.5, null, true, {deep: "x"}]
      text: "{{ nodes.shaky.output.value }}"
  - id: broken
    type: test.flaky
    needs: [nested]
    on_error: continue
    with: {succeed_on: 0}
  - id: after
    type: log
    needs: [broken]
    with: {message: "after {{ nodes.nested.output.text }}"}
outputs:
  text: "{{ nodes.nested.output.text }}"
"""
)
TABLES = {"runs": "id", "run_events": "run_id, seq", "run_steps": "run_id, key, attempt", "credit_ledger": "id"}


def _rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(f"SELECT * FROM {table} ORDER BY {TABLES[table]}")
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    # a step's worker is also written by the claim, outside the flushed writes (so not replayed into the copy)
    return [tuple(v for name, v in zip(names, row, strict=True) if name != "worker_id") for row in rows]


def test_plain_sqlite_writes_store_exactly_what_sqlalchemy_stores(tmp_path: Path) -> None:
    flushed: list[tuple[Any, Any]] = []
    with running("embedded", tmp_path / "a") as runtime:
        writes = runtime.orchestrator._writes
        assert isinstance(writes, SqliteWrites)
        flush = writes.flush

        def capture(conn: sa.Connection, pending: Any, inserts: Any = None) -> None:
            flushed.append(copy.deepcopy((pending, inserts)))
            flush(conn, pending, inserts)

        writes.flush = capture  # type: ignore[method-assign]
        _, status = run_flow(runtime, RICH)
        url = str(runtime.db.url)
    assert status == str(RunStatus.SUCCEEDED)
    assert any(inserts for _, inserts in flushed), "the run charged no C-ION: the ledger path was not exercised"
    a = Path(url.removeprefix("sqlite:///"))

    b = tmp_path / "b.db"
    engine = make_engine(sqlite_url(b))
    migrate(engine)
    with sqlite3.connect(b) as raw:  # the rows the hot path does not write, copied as they are
        raw.execute("ATTACH DATABASE ? AS a", (str(a),))
        for table in ("owners", "flows", "flow_versions", "runs"):
            raw.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM a.{table}")
    plain = Writes(postgres=False)
    for pending, inserts in flushed:
        with engine.begin() as conn:
            plain.flush(conn, pending, inserts)
    engine.dispose()

    for table in TABLES:
        written, expected = _rows(a, table), _rows(b, table)
        assert written, f"{table}: no rows"
        assert written == expected, f"{table} differs"
    steps = {row[2]: row for row in _rows(a, "run_steps")}  # run_id, run_attempt, key, ...
    assert {"shaky", "nested", "broken", "after"} <= set(steps)


def test_a_taken_sequence_number_is_a_conflict_on_the_plain_path(tmp_path: Path) -> None:
    with running("embedded", tmp_path, start=False) as runtime:
        run_id = runtime.orchestrator.start_run(runtime.orchestrator.save_flow(RICH, "rich.yaml")[1])
        writes = runtime.orchestrator._writes
        event = {
            "run_id": run_id,
            "seq": 1,
            "kind": "run_started",
            "at": datetime.now(UTC),
            "data": {},
        }  # seq 1 is taken
        with pytest.raises(Conflict), runtime.db.begin() as conn:
            writes.flush(conn, [(event, [], run_id, {"seq": 1})])
