"""Runs as one owner sees them (the API's view): a run is theirs when its flow is (``flows.owner_id``); another
owner's run is simply not there. Pages go newest first with the last run id as the cursor (ids sort by time)."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.runtime import queries
from engine.runtime.blobs import BlobMissingError, BlobStore
from engine.runtime.queries import RunSummary
from engine.store.tables import flow_versions, flows, run_steps, runs


@dataclass(frozen=True, slots=True)
class RunFilter:
    flow_id: str | None = None
    status: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    before: str | None = None  # a run id: only runs older than it (the page cursor)


@dataclass(frozen=True, slots=True)
class RunHead:
    owner_id: str
    flow_id: str
    status: str
    seq: int  # events recorded so far

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


def head(db: sa.Engine, run_id: str) -> RunHead | None:
    """Whose a run is (through its flow), its status and event count; None when there is no such run."""
    with db.connect() as conn:
        row = conn.execute(
            sa.select(flows.c.owner_id, runs.c.flow_id, runs.c.status, runs.c.seq)
            .join(flows, flows.c.id == runs.c.flow_id)
            .where(runs.c.id == run_id)
        ).first()
    return None if row is None else RunHead(str(row.owner_id), str(row.flow_id), str(row.status), int(row.seq))


def page(db: sa.Engine, owner_id: str, where: RunFilter, limit: int) -> list[RunSummary]:
    """Up to ``limit`` of the owner's runs, newest first."""
    query = (
        sa.select(runs)
        .join(flows, flows.c.id == runs.c.flow_id)
        .where(flows.c.owner_id == owner_id)
        .order_by(runs.c.id.desc())
        .limit(limit)
    )
    if where.flow_id:
        query = query.where(runs.c.flow_id == where.flow_id)
    if where.status:
        query = query.where(runs.c.status == where.status)
    if where.since is not None:
        query = query.where(runs.c.created_at >= where.since)
    if where.until is not None:
        query = query.where(runs.c.created_at < where.until)
    if where.before:
        query = query.where(runs.c.id < where.before)
    with db.connect() as conn:
        return [queries.summary_of(row) for row in conn.execute(query)]


def flow_of(db: sa.Engine, owner_id: str, flow_id: str) -> tuple[str | None, bool] | None:
    """An owner's flow: (its latest version, whether it is deleted); None when they have no such flow."""
    with db.connect() as conn:
        row = conn.execute(
            sa.select(flows.c.latest_version, flows.c.deleted_at).where(
                flows.c.id == flow_id, flows.c.owner_id == owner_id
            )
        ).first()
    return None if row is None else (row.latest_version, row.deleted_at is not None)


def is_version_of(db: sa.Engine, version: str, flow_id: str) -> bool:
    with db.connect() as conn:
        found = conn.execute(sa.select(flow_versions.c.flow_id).where(flow_versions.c.id == version)).scalar()
    return found == flow_id


@dataclass(frozen=True, slots=True)
class RecordedInput:
    attempt: int
    value: Any  # the JSON value, secrets blanked; the preview's text when only a cut preview was kept
    truncated: bool


def recorded_input(db: sa.Engine, blobs: BlobStore, run_id: str, key: str) -> RecordedInput | None:
    """What the latest attempt of a step was called with: whole (from the blob store when it outgrew its
    preview), or the preview cut at its limit when the whole input was over the payload size limit."""
    with db.connect() as conn:
        row = conn.execute(
            sa.select(run_steps.c.attempt, run_steps.c.input_preview, run_steps.c.input_ref)
            .where(run_steps.c.run_id == run_id, run_steps.c.key == key, run_steps.c.input_preview.is_not(None))
            .order_by(run_steps.c.run_attempt.desc(), run_steps.c.attempt.desc())
            .limit(1)
        ).first()
    if row is None:
        return None
    if row.input_ref:
        with contextlib.suppress(
            BlobMissingError, ValueError
        ):  # a blob store cleaned by hand: fall back on the preview
            return RecordedInput(int(row.attempt), json.loads(blobs.get(row.input_ref)), False)
    try:
        return RecordedInput(int(row.attempt), json.loads(row.input_preview), False)
    except json.JSONDecodeError:  # cut at the preview limit
        return RecordedInput(int(row.attempt), str(row.input_preview), True)


def flow_ids(db: sa.Engine, owner_id: str) -> list[str]:
    """The ids of an owner's flows that are not deleted, sorted (a run list's flow filter)."""
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(flows.c.id).where(flows.c.owner_id == owner_id, flows.c.deleted_at.is_(None)).order_by(flows.c.id)
        )
        return [str(r.id) for r in rows]
