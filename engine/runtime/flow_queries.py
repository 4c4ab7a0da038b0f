"""Read-side queries over stored flows, always scoped to one owner (for the API and the UI).

A flow someone else owns, or one that was deleted, is simply not found: callers answer "not found", never
"forbidden", so nothing tells one owner which flow ids another uses. Listings page by flow id (a stable order);
a search matches the id, the name or the description of the latest version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import yaml

from engine.store.db import utc
from engine.store.tables import flow_versions, flows, triggers

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BATCH = 100  # rows read per round while a search filters candidates


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """A live flow of one owner, with its latest version's source and what it declares."""

    id: str
    name: str | None
    latest_version: str | None
    active_version: str | None
    created_at: datetime
    updated_at: datetime
    source: str  # the latest version's YAML as submitted ("" if no version is stored)
    armed: int  # how many of its triggers are armed now

    @property
    def header(self) -> dict[str, Any]:
        """What a listing needs from the document: description and declared trigger types (a light parse)."""
        return _header(self.source)


@dataclass(frozen=True, slots=True)
class VersionRecord:
    id: str
    flow_id: str
    created_at: datetime
    source: str


def _header(source: str) -> dict[str, Any]:
    try:
        data = yaml.load(source, Loader=_Loader) if source else None  # a safe loader (C if built)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return {"description": None, "trigger_types": []}
    declared = data.get("triggers") or []
    kinds = [str(t.get("type")) for t in declared if isinstance(t, dict)] if isinstance(declared, list) else []
    description = data.get("description")
    return {"description": description if isinstance(description, str) else None, "trigger_types": kinds}


def _select() -> sa.Select[Any]:
    armed = (
        sa.select(sa.func.count())
        .select_from(triggers)
        .where(triggers.c.flow_id == flows.c.id)
        .correlate(flows)
        .scalar_subquery()
    )
    return sa.select(
        flows.c.id,
        flows.c.name,
        flows.c.latest_version,
        flows.c.active_version,
        flows.c.created_at,
        flows.c.updated_at,
        sa.func.coalesce(flow_versions.c.source, "").label("source"),
        armed.label("armed"),
    ).select_from(flows.outerjoin(flow_versions, flow_versions.c.id == flows.c.latest_version))


def _live(owner: str) -> Any:
    return sa.and_(flows.c.owner_id == owner, flows.c.deleted_at.is_(None))


def _record(row: Any) -> FlowRecord:
    return FlowRecord(
        id=row.id,
        name=row.name,
        latest_version=row.latest_version,
        active_version=row.active_version,
        created_at=utc(row.created_at) or datetime.now(UTC),
        updated_at=utc(row.updated_at) or datetime.now(UTC),
        source=row.source,
        armed=int(row.armed or 0),
    )


def get(db: sa.Engine, owner: str, flow_id: str) -> FlowRecord | None:
    """The owner's live flow ``flow_id``, or None (unknown, another owner's, or deleted)."""
    with db.connect() as conn:
        row = conn.execute(_select().where(flows.c.id == flow_id, _live(owner))).first()
    return None if row is None else _record(row)


def page(db: sa.Engine, owner: str, *, limit: int, after: str | None = None, q: str | None = None) -> list[FlowRecord]:
    """Up to ``limit`` live flows of the owner with ids after ``after``, by id; ``q`` (case-insensitive) must
    occur in the id, the name or the latest version's description."""
    return list(_matching(db, owner, after, q, limit))


def _matching(db: sa.Engine, owner: str, after: str | None, q: str | None, limit: int) -> Iterator[FlowRecord]:
    needle = (q or "").strip().casefold()
    query = _select().where(_live(owner)).order_by(flows.c.id)
    if needle:
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # the source is a superset filter for the description: candidates are confirmed below
        query = query.where(
            sa.or_(
                flows.c.id.ilike(pattern, escape="\\"),
                flows.c.name.ilike(pattern, escape="\\"),
                flow_versions.c.source.ilike(pattern, escape="\\"),
            )
        )
    found = 0
    cursor = after
    while found < limit:
        batch_query = query if cursor is None else query.where(flows.c.id > cursor)
        with db.connect() as conn:
            rows = conn.execute(batch_query.limit(_BATCH if needle else limit - found)).all()
        for row in rows:
            record = _record(row)
            if needle and not _matches(record, needle):
                continue
            yield record
            found += 1
            if found == limit:
                return
        if not rows or not needle:
            return
        cursor = rows[-1].id


def _matches(record: FlowRecord, needle: str) -> bool:
    if needle in record.id.casefold() or needle in (record.name or "").casefold():
        return True
    return needle in (record.header["description"] or "").casefold()


def versions(db: sa.Engine, flow_id: str, *, limit: int, before: str | None = None) -> list[VersionRecord]:
    """The flow's stored versions, newest first; ``before``: a version id, for the next page (sources omitted)."""
    query = sa.select(flow_versions.c.id, flow_versions.c.flow_id, flow_versions.c.created_at).where(
        flow_versions.c.flow_id == flow_id
    )
    if before is not None:
        at = (
            sa.select(flow_versions.c.created_at)
            .where(flow_versions.c.id == before, flow_versions.c.flow_id == flow_id)
            .scalar_subquery()
        )
        query = query.where(
            sa.or_(
                flow_versions.c.created_at < at,
                sa.and_(flow_versions.c.created_at == at, flow_versions.c.id < before),
            )
        )
    query = query.order_by(flow_versions.c.created_at.desc(), flow_versions.c.id.desc()).limit(limit)
    with db.connect() as conn:
        return [VersionRecord(r.id, r.flow_id, utc(r.created_at) or datetime.now(UTC), "") for r in conn.execute(query)]


def version(db: sa.Engine, flow_id: str, version_id: str) -> VersionRecord | None:
    """One stored version of the flow, with its source (None if it is not this flow's)."""
    with db.connect() as conn:
        row = conn.execute(
            sa.select(flow_versions).where(flow_versions.c.id == version_id, flow_versions.c.flow_id == flow_id)
        ).first()
    if row is None:
        return None
    return VersionRecord(row.id, row.flow_id, utc(row.created_at) or datetime.now(UTC), row.source)


def stored(db: sa.Engine, owner: str, flow_id: str, version_id: str) -> tuple[bool, bool]:
    """Before a save: (the owner has this flow live, this version is stored)."""
    with db.connect() as conn:
        live = conn.execute(sa.select(flows.c.id).where(flows.c.id == flow_id, _live(owner))).first()
        known = conn.execute(
            sa.select(flow_versions.c.id).where(flow_versions.c.id == version_id, flow_versions.c.flow_id == flow_id)
        ).first()
    return live is not None, known is not None


def soft_delete(db: sa.Engine, owner: str, flow_id: str, now: datetime | None = None) -> bool:
    """Mark the owner's live flow deleted and disarm its triggers, atomically; its versions and runs stay.
    False if there is no such flow. Saving a flow with this id again brings it back (inactive)."""
    with db.begin() as conn:
        done = conn.execute(
            flows.update()
            .where(flows.c.id == flow_id, _live(owner))
            .values(deleted_at=now or datetime.now(UTC), active_version=None, webhook_tokens=None)  # URLs retired
        )
        if not done.rowcount:
            return False
        conn.execute(triggers.delete().where(triggers.c.flow_id == flow_id))
    return True


__all__ = ["FlowRecord", "VersionRecord", "get", "page", "soft_delete", "stored", "version", "versions"]
