"""Read-side queries over the run projection: listings and a run's detail (for the CLI, API and UI)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.store.db import utc
from engine.store.tables import approvals, run_steps, runs


@dataclass(frozen=True, slots=True)
class RunSummary:
    id: str
    flow_id: str
    version_id: str
    status: str
    trigger_kind: str
    created_at: datetime
    finished_at: datetime | None
    total_cion: float
    attempt: int
    error: dict[str, Any] | None
    outputs: Any = None
    input: Any = None
    parent_run_id: str | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return round((self.finished_at - self.created_at).total_seconds() * 1000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow_id": self.flow_id,
            "version_id": self.version_id,
            "status": self.status,
            "trigger": self.trigger_kind,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_ms": self.duration_ms,
            "total_cion": self.total_cion,
            "attempt": self.attempt,
            "error": self.error,
            "outputs": self.outputs,
            "input": self.input,
            "parent_run_id": self.parent_run_id,
        }


@dataclass(frozen=True, slots=True)
class StepRecord:
    key: str
    node_id: str
    iteration: str | None
    node_type: str | None
    status: str
    attempt: int
    run_attempt: int
    waiting: str | None
    started_at: datetime | None
    finished_at: datetime | None
    input_preview: str | None
    output_preview: str | None
    output_ref: str | None
    error: dict[str, Any] | None
    logs: list[list[str]] | None
    cost_cion: float
    reused: bool
    child_run_id: str | None
    usage: dict[str, Any] | None = None  # a metered step's model, tokens, latency_ms and cost

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds() * 1000, 1)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        for name in ("started_at", "finished_at"):
            out[name] = out[name].isoformat() if out[name] else None
        out["duration_ms"] = self.duration_ms
        return out


_SUMMARY = (
    runs.c.id,
    runs.c.flow_id,
    runs.c.version_id,
    runs.c.status,
    runs.c.trigger_kind,
    runs.c.created_at,
    runs.c.finished_at,
    runs.c.total_cion,
    runs.c.attempt,
    runs.c.error,
)


def summary_of(row: Any, detail: bool = False) -> RunSummary:
    """A run row as a summary (``detail``: with its outputs, input and parent), for every listing of runs."""
    return RunSummary(
        row.id,
        row.flow_id,
        row.version_id,
        row.status,
        row.trigger_kind,
        utc(row.created_at),  # type: ignore[arg-type]
        utc(row.finished_at),
        row.total_cion,
        row.attempt,
        row.error,
        row.outputs if detail else None,
        row.input if detail else None,
        row.parent_run_id if detail else None,
    )


def list_runs(
    db: sa.Engine, *, limit: int = 20, flow_id: str | None = None, status: str | None = None
) -> list[RunSummary]:
    query = sa.select(*_SUMMARY).order_by(runs.c.id.desc()).limit(limit)
    if flow_id:
        query = query.where(runs.c.flow_id == flow_id)
    if status:
        query = query.where(runs.c.status == status)
    with db.begin() as conn:
        return [summary_of(row) for row in conn.execute(query)]


def find_run(db: sa.Engine, run_id: str) -> RunSummary | None:
    """A run by id, or by a unique prefix of at least 6 characters (ids are long to type)."""
    query = sa.select(*_SUMMARY, runs.c.outputs, runs.c.input, runs.c.parent_run_id)
    with db.begin() as conn:
        row = conn.execute(query.where(runs.c.id == run_id)).first()
        if row is None and len(run_id) >= 6:
            found = conn.execute(query.where(runs.c.id.startswith(run_id.upper())).limit(2)).all()
            row = found[0] if len(found) == 1 else None
    return summary_of(row, detail=True) if row is not None else None


def run_steps_of(db: sa.Engine, run_id: str, *, history: bool = False) -> list[StepRecord]:
    """The run's steps in start order: the latest attempt of each (every attempt with ``history``). After a re-run,
    a step the new run attempt has not reached (yet) is not shown with the old attempt's cancellation or failure:
    that is no longer what will happen to it (its succeeded rows stay: the re-run reuses them)."""
    with db.begin() as conn:
        rows = conn.execute(
            sa.select(run_steps)
            .where(run_steps.c.run_id == run_id)
            .order_by(
                run_steps.c.run_attempt,
                sa.func.coalesce(run_steps.c.started_at, run_steps.c.finished_at),
                run_steps.c.key,
                run_steps.c.attempt,
            )
        ).all()
    records: dict[str, StepRecord] = {}
    out: list[StepRecord] = []
    for row in rows:
        record = StepRecord(
            row.key,
            row.node_id,
            row.iteration,
            row.node_type,
            row.status,
            row.attempt,
            row.run_attempt,
            row.waiting,
            utc(row.started_at),
            utc(row.finished_at),
            row.input_preview,
            row.output_preview,
            row.output_ref,
            row.error,
            row.logs,
            row.cost_cion,
            row.reused,
            row.child_run_id,
            row.usage,
        )
        if history:
            out.append(record)
        else:
            records.pop(row.key, None)  # keep the newest, in the order it last started
            records[row.key] = record
    if history:
        return out
    current = max((r.run_attempt for r in records.values()), default=1)
    stale = ("cancelled", "failed")
    return [r for r in records.values() if r.run_attempt == current or r.status not in stale]


def pending_approvals(db: sa.Engine, run_id: str) -> list[dict[str, Any]]:
    with db.begin() as conn:
        rows = conn.execute(
            sa.select(approvals).where(approvals.c.run_id == run_id, approvals.c.decided_at.is_(None))
        ).all()
    return [{"step": r.step_key, "message": r.message, "approvers": r.approvers} for r in rows]
