"""Runs' recorded events as feeds for live views (the API's Server-Sent Events), resumable without loss.

A run's ``run_events`` are its truth and carry a gapless per-run ``seq``, committed in seq order under the run's
lock: ``RunFeed`` reads them after a seq, and replays each through the machine (read-only, as the orchestrator
rebuilds a run) to say what it changed: the steps it started, finished or put to wait, and whether the run
finished. Replay is deterministic, so the same seq always yields the same feed event, whoever reads it and when.

An owner's feed (``OwnerFeed``) interleaves all their runs. ``run_events`` has no order across runs that matches
commit order (``at`` is stamped before the commit, on each worker's clock), so its cursor is exact per run and
approximate only in time: ``watermark`` (every event stamped at or before it was delivered) plus, for each run
with events after the watermark, the last seq delivered. The watermark trails the newest delivered event by
``settle`` seconds, so an event that commits up to ``settle`` seconds after it was stamped is still delivered,
and a reconnect never delivers an event twice::

    delivered(cursor) = {e : e.at <= watermark} ∪ {e : e.seq <= seqs[e.run_id]}
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.core.codec import event_from_json
from engine.core.decisions import FinishRun
from engine.core.machine import advance
from engine.core.plan import Plan
from engine.core.state import RunState
from engine.errors import IonfluxError
from engine.runtime import payloads
from engine.runtime.orchestrator import Orchestrator
from engine.store.db import utc
from engine.store.tables import flows, run_events, run_steps, runs

#: payload fields left out of feed events: fetched by their own routes, not pushed to every viewer
PAYLOADS = ("input", "output", "outputs")
#: how long after its stamped time an event may still commit and be delivered by an owner's feed
SETTLE_SECONDS = 10.0
BATCH = 200


class CursorInvalidError(IonfluxError):
    """Raised when an owner feed's cursor (``Last-Event-ID``) was not made by this server."""

    code = "events.cursor_invalid"


@dataclass(frozen=True, slots=True)
class StepChange:
    """A step as an event left it (only the steps the event changed)."""

    key: str
    status: str
    attempt: int
    waiting: str | None
    error: dict[str, Any] | None
    output_preview: str | None
    logs: list[list[str]] | None = None  # the attempt's log lines, with the event that finished it


@dataclass(frozen=True, slots=True)
class FeedEvent:
    run_id: str
    flow_id: str
    seq: int
    kind: str  # the recorded event: run_started, step_succeeded, step_failed, approval_decided, timer_fired, …
    at: datetime
    event: dict[str, Any]  # the event's own fields, payloads left out
    status: str  # the run's status after the event
    finished: bool  # the run finished with this event
    steps: tuple[StepChange, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "flow_id": self.flow_id,
            "seq": self.seq,
            "kind": self.kind,
            "at": self.at.isoformat(),
            "event": self.event,
            "status": self.status,
            "finished": self.finished,
            "steps": [asdict(s) for s in self.steps],
        }


class RunFeed:
    """One run's events in seq order, each with what it changed; keeps the replayed state between reads."""

    def __init__(self, orchestrator: Orchestrator, run_id: str, flow_id: str) -> None:
        self.orchestrator = orchestrator
        self.run_id = run_id
        self.flow_id = flow_id
        self.seq = 0
        self._plan: Plan | None = None
        self._state: RunState | None = None

    def read(self, conn: sa.Connection, after: int, *, upto: int | None = None, limit: int = BATCH) -> list[FeedEvent]:
        """The events with ``after < seq <= upto``, at most ``limit`` (earlier ones are replayed, not returned)."""
        if after < self.seq:  # asked to go back: start over (replay is deterministic)
            self.seq, self._plan, self._state = 0, None, None
        out: list[FeedEvent] = []
        while len(out) < limit:
            query = (
                sa.select(run_events.c.seq, run_events.c.kind, run_events.c.at, run_events.c.data)
                .where(run_events.c.run_id == self.run_id, run_events.c.seq > self.seq)
                .order_by(run_events.c.seq)
                .limit(BATCH)
            )
            if upto is not None:
                query = query.where(run_events.c.seq <= upto)
            rows = conn.execute(query).all()
            for row in rows:
                if row.seq != self.seq + 1:
                    return out  # a gap: the next event is not committed yet (never skip one)
                event = self._apply(conn, row)
                if event.seq > after:
                    out.append(event)
                    if len(out) >= limit:
                        return out
            if len(rows) < BATCH:
                return out
        return out

    def _apply(self, conn: sa.Connection, row: Any) -> FeedEvent:
        data: dict[str, Any] = dict(row.data or {})
        if "version" in data:
            self._plan = self.orchestrator.plan(data["version"], conn)
        loaded = {k: payloads.load(data[k], self.orchestrator.blobs) if k in PAYLOADS else v for k, v in data.items()}
        assert self._plan is not None, f"run {self.run_id}: first event is not run_started"
        before = self._state
        transition = advance(self._plan, before, event_from_json(row.kind, loaded))
        state = self._state = transition.state
        self.seq = row.seq
        keys = state.steps.keys() if transition.rewritten else transition.changed
        finished_keys = {data.get("key")} if row.kind in ("step_succeeded", "step_failed") else set()
        limit = self.orchestrator.config.preview_chars
        steps = []
        for key in keys:
            step = state.step(key)
            logs = (
                self._logs(conn, str(key), data.get("attempt"), step.run_attempt) if str(key) in finished_keys else None
            )
            steps.append(
                StepChange(
                    str(key),
                    str(step.status),
                    step.attempt,
                    step.waiting,
                    step.error.to_dict() if step.error else None,
                    payloads.preview(step.output, limit),
                    logs,
                )
            )
        finished = any(isinstance(d, FinishRun) for d in transition.decisions)
        shown = {k: v for k, v in data.items() if k not in PAYLOADS and k != "at"}
        return FeedEvent(
            self.run_id,
            self.flow_id,
            row.seq,
            row.kind,
            utc(row.at),  # type: ignore[arg-type]
            shown,
            str(state.status),
            finished,
            tuple(steps),
        )

    def _logs(self, conn: sa.Connection, key: str, attempt: Any, run_attempt: int) -> list[list[str]] | None:
        if not isinstance(attempt, int):
            return None
        logs = conn.execute(
            sa.select(run_steps.c.logs).where(
                run_steps.c.run_id == self.run_id,
                run_steps.c.run_attempt == run_attempt,
                run_steps.c.key == key,
                run_steps.c.attempt == attempt,
            )
        ).scalar()
        return logs or None


@dataclass(slots=True)
class OwnerCursor:
    """Where an owner's feed stands (see the module's docstring); ``encode()`` is the SSE event id."""

    watermark: datetime
    seqs: dict[str, int] = field(default_factory=dict)

    def encode(self) -> str:
        body = json.dumps({"w": self.watermark.isoformat(), "s": self.seqs}, separators=(",", ":"))
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> OwnerCursor:
        try:
            body = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            watermark = datetime.fromisoformat(body["w"])
            seqs = body["s"]
            if watermark.tzinfo is None or not isinstance(seqs, dict):
                raise ValueError("not a cursor")
            if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in seqs.items()):
                raise ValueError("not a cursor")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise CursorInvalidError(  # the parser's own words would say nothing useful to a client
                f"{text[:40]!r} is not an events cursor of this server",
                hint="resume with the id of the last event received, or leave Last-Event-ID out to start from now",
            ) from None
        return cls(watermark.astimezone(UTC), dict(seqs))


class OwnerFeed:
    """Every run of one owner: their events as they commit, each with the cursor that resumes after it."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        owner_id: str,
        cursor: OwnerCursor,
        *,
        settle: float = SETTLE_SECONDS,
        cache: int = 256,
    ) -> None:
        self.orchestrator = orchestrator
        self.owner_id = owner_id
        self.cursor = cursor
        self.settle = timedelta(seconds=settle)
        self._feeds: OrderedDict[str, RunFeed] = OrderedDict()
        self._cache = cache
        self._last_at: dict[str, datetime] = {}  # run -> when its last delivered event was stamped
        self._newest: datetime | None = None

    @classmethod
    def starting(cls, orchestrator: Orchestrator, owner_id: str, since: datetime, **kw: Any) -> OwnerFeed:
        return cls(orchestrator, owner_id, OwnerCursor(since.astimezone(UTC)), **kw)

    def read(self, limit: int = BATCH) -> list[tuple[FeedEvent, str]]:
        """New events (oldest stamped first, each run in seq order), each with the cursor that resumes after it."""
        out: list[tuple[FeedEvent, str]] = []
        cursor = self.cursor
        with self.orchestrator.db.connect() as conn:
            self._learn(conn)
            done = [sa.or_(run_events.c.run_id != run, run_events.c.seq > seq) for run, seq in cursor.seqs.items()]
            rows = conn.execute(
                sa.select(run_events.c.run_id, run_events.c.seq, runs.c.flow_id)
                .join(runs, runs.c.id == run_events.c.run_id)
                .join(flows, flows.c.id == runs.c.flow_id)
                .where(flows.c.owner_id == self.owner_id, run_events.c.at > cursor.watermark, *done)
                .order_by(run_events.c.at, run_events.c.run_id, run_events.c.seq)
                .limit(limit)
            ).all()
            for run_id, seq, flow_id in rows:
                last = cursor.seqs.get(run_id)
                if last is not None and seq <= last:
                    continue  # delivered with an earlier event of its run in this batch
                if last is None:  # the run's first event after the watermark, whatever its stamp says
                    last = self._first_after_watermark(conn, run_id) - 1
                for event in self._feed(run_id, flow_id).read(conn, last, upto=seq, limit=seq - last):
                    cursor.seqs[run_id] = event.seq
                    self._last_at[run_id] = event.at
                    self._newest = event.at if self._newest is None else max(self._newest, event.at)
                    out.append((event, cursor.encode()))
        self._advance()
        return out

    def _advance(self) -> None:
        """Move the watermark to ``settle`` before the newest delivered event; forget the runs it passed."""
        cursor = self.cursor
        if self._newest is None or self._newest - self.settle <= cursor.watermark:
            return
        cursor.watermark = self._newest - self.settle
        for run_id in [r for r, at in self._last_at.items() if at <= cursor.watermark]:
            cursor.seqs.pop(run_id, None)
            del self._last_at[run_id]

    def _learn(self, conn: sa.Connection) -> None:
        """When the runs of a resumed cursor delivered their last event (to drop them once the watermark passes)."""
        for run_id in [r for r in self.cursor.seqs if r not in self._last_at]:
            at = conn.execute(
                sa.select(run_events.c.at).where(
                    run_events.c.run_id == run_id, run_events.c.seq == self.cursor.seqs[run_id]
                )
            ).scalar()
            self._last_at[run_id] = utc(at) or datetime.max.replace(tzinfo=UTC)

    def _first_after_watermark(self, conn: sa.Connection, run_id: str) -> int:
        first = conn.execute(
            sa.select(sa.func.min(run_events.c.seq)).where(
                run_events.c.run_id == run_id, run_events.c.at > self.cursor.watermark
            )
        ).scalar()
        return int(first or 1)

    def _feed(self, run_id: str, flow_id: str) -> RunFeed:
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = RunFeed(self.orchestrator, run_id, flow_id)
            while len(self._feeds) > self._cache:
                self._feeds.popitem(last=False)
        self._feeds.move_to_end(run_id)
        return feed
