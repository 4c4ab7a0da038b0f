"""Triggers: what starts flows by themselves, armed per flow version, and the inbox that makes them durable.

Activating a version arms its triggers and disarms the previous version's, in one transaction. Every trigger
event (a cron tick, a webhook delivery, an event message) is first *accepted*: stored in ``trigger_inbox`` with
a dedupe key, before the sender is acknowledged. A dispatcher then starts its run exactly once
(``Orchestrator.start_from_inbox``). A duplicate (the same dedupe key for the same flow) is accepted as the same
event and starts nothing new.

Cron ticks are fired by ``fire_due``, which any number of scheduler processes may call at once: each due trigger
is advanced with a compare-and-set on its ``next_fire_at``, in the same transaction as the inbox rows of its
fires, so each tick is fired by exactly one of them. After downtime, ``misfire: skip`` drops the ticks that were
missed (a tick late by less than ``MISFIRE_GRACE`` is not missed), ``run_once`` fires once for all of them.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.dsl import schedule
from engine.dsl.model import CronTrigger, Flow, WebhookTrigger
from engine.errors import IonfluxError
from engine.steps.bus import matches
from engine.store import ids
from engine.store.db import reading, utc
from engine.store.tables import flows, trigger_inbox, triggers

log = logging.getLogger("ionflux.triggers")
MISFIRE_GRACE = timedelta(seconds=60)
ARMED_KINDS = ("webhook", "cron", "event")  # manual and flow triggers need nothing armed


class TriggerError(IonfluxError):
    code = "trigger.not_found"


@dataclass(frozen=True, slots=True)
class Armed:
    """An armed trigger, as listings show it."""

    id: str
    flow_id: str
    version_id: str
    kind: str
    position: int
    config: dict[str, Any]
    token: str | None
    next_fire_at: datetime | None
    last_fire_at: datetime | None


@dataclass(frozen=True, slots=True)
class Accepted:
    inbox_id: str
    duplicate: bool  # the same dedupe key was accepted before: nothing new will start


class Triggers:
    def __init__(
        self, db: sa.Engine, plan_of: Callable[[str], Flow], clock: Callable[[], datetime] | None = None
    ) -> None:
        self.db = db
        self._flow_of = plan_of  # version id -> its validated flow
        self._now = clock or (lambda: datetime.now(UTC))

    # --- arming ---------------------------------------------------------------------------------------------

    def activate(self, flow_id: str, version: str) -> list[Armed]:
        """Arm ``version``'s triggers and disarm the flow's others, atomically; a webhook keeps its URL token
        (by position) across versions."""
        flow = self._flow_of(version)
        if flow.id != flow_id:
            raise TriggerError(f"version {version} is of flow {flow.id!r}, not {flow_id!r}", code="trigger.mismatch")
        now = self._now()
        with self.db.begin() as conn:
            kept = conn.execute(sa.select(flows.c.webhook_tokens).where(flows.c.id == flow_id)).scalar() or {}
            tokens = {int(position): token for position, token in kept.items()}  # from before a deactivation
            tokens |= _webhook_tokens(conn, flow_id)
            conn.execute(triggers.delete().where(triggers.c.flow_id == flow_id))
            for position, trigger in enumerate(flow.triggers):
                if trigger.type not in ARMED_KINDS:
                    continue
                next_fire = None
                if isinstance(trigger, CronTrigger):
                    next_fire = schedule.next_fire(trigger.cron, trigger.timezone, now)
                token = (tokens.get(position) or new_token()) if isinstance(trigger, WebhookTrigger) else None
                conn.execute(
                    triggers.insert().values(
                        id=ids.new_id(),
                        flow_id=flow_id,
                        version_id=version,
                        kind=trigger.type,
                        position=position,
                        config=trigger.model_dump(mode="json", exclude_none=True),
                        enabled=trigger.enabled,
                        token=token,
                        next_fire_at=next_fire,
                    )
                )
            conn.execute(
                flows.update()
                .where(flows.c.id == flow_id)
                .values(active_version=version, webhook_tokens=None, updated_at=now)
            )
        return self.armed(flow_id)

    def deactivate(self, flow_id: str) -> None:
        """Disarm the flow's triggers: its webhook URLs answer 404 until it is activated again, which gives the same
        URLs back (their tokens are kept on the flow meanwhile; ``rotate`` is how a URL changes)."""
        with self.db.begin() as conn:
            kept = {str(position): token for position, token in _webhook_tokens(conn, flow_id).items()}
            found = conn.execute(
                flows.update().where(flows.c.id == flow_id).values(active_version=None, webhook_tokens=kept or None)
            )
            if found.rowcount == 0:
                raise TriggerError(f"no flow {flow_id!r}", hint="`ionflux triggers` lists the flows with triggers")
            conn.execute(triggers.delete().where(triggers.c.flow_id == flow_id))

    def rotate(self, flow_id: str, position: int | None = None) -> str:
        """A new URL token for the flow's webhook (the old URL stops working at once)."""
        webhooks = [t for t in self.armed(flow_id) if t.kind == "webhook"]
        chosen = [t for t in webhooks if position is None or t.position == position]
        if len(chosen) != 1:
            raise TriggerError(
                f"flow {flow_id!r} has {len(webhooks)} armed webhook triggers"
                + ("" if position is None else f", none at position {position}"),
                hint="activate the flow first; with several webhooks, pick one with --position",
            )
        token = new_token()
        with self.db.begin() as conn:
            conn.execute(triggers.update().where(triggers.c.id == chosen[0].id).values(token=token))
        return token

    def armed(self, flow_id: str | None = None) -> list[Armed]:
        query = sa.select(triggers).order_by(triggers.c.flow_id, triggers.c.position)
        if flow_id is not None:
            query = query.where(triggers.c.flow_id == flow_id)
        with self.db.connect() as conn:
            return [_armed(row) for row in conn.execute(query)]

    def by_token(self, token: str) -> Armed | None:
        with self.db.connect() as conn:
            row = conn.execute(
                sa.select(triggers).where(triggers.c.token == token, triggers.c.kind == "webhook")
            ).first()
        return None if row is None else _armed(row)

    def for_subject(self, subject: str) -> list[Armed]:
        """The armed event triggers a subject matches (``*`` one token, ``>`` the rest)."""
        with self.db.connect() as conn:
            rows = conn.execute(sa.select(triggers).where(triggers.c.kind == "event", triggers.c.enabled)).all()
        return [_armed(r) for r in rows if matches(r.config["subject"], subject)]

    # --- the inbox ------------------------------------------------------------------------------------------

    def accept(
        self,
        trigger: Armed,
        event: dict[str, Any],
        input: Any = None,
        dedupe_key: str | None = None,
        conn: sa.Connection | None = None,
    ) -> Accepted:
        """Store a trigger event (before its sender is acknowledged). A dedupe key seen before for this flow is
        the same event: accepted again, nothing new stored."""
        if conn is None:
            try:
                with self.db.begin() as own:
                    return self._insert(trigger, event, input, dedupe_key, own)
            except sa.exc.IntegrityError:  # the same key, accepted concurrently by another process
                with self.db.connect() as own:
                    return Accepted(self._seen(own, trigger.flow_id, dedupe_key) or "", True)
        try:
            with conn.begin_nested():  # inside a caller's transaction: a lost race must not undo the rest of it
                return self._insert(trigger, event, input, dedupe_key, conn)
        except sa.exc.IntegrityError:
            pass
        return Accepted(self._seen(conn, trigger.flow_id, dedupe_key) or "", True)

    def _insert(
        self, trigger: Armed, event: dict[str, Any], input: Any, dedupe_key: str | None, conn: sa.Connection
    ) -> Accepted:
        seen = self._seen(conn, trigger.flow_id, dedupe_key)
        if seen is not None:
            return Accepted(seen, True)
        inbox_id = ids.new_id()
        conn.execute(
            trigger_inbox.insert().values(
                id=inbox_id,
                flow_id=trigger.flow_id,
                version_id=trigger.version_id,
                kind=trigger.kind,
                position=trigger.position,
                dedupe_key=dedupe_key,
                trigger=event,
                input=input,
                status="accepted",
                received_at=self._now(),
            )
        )
        return Accepted(inbox_id, False)

    @staticmethod
    def _seen(conn: sa.Connection, flow_id: str, dedupe_key: str | None) -> str | None:
        if dedupe_key is None:
            return None
        found: str | None = conn.execute(
            sa.select(trigger_inbox.c.id).where(
                trigger_inbox.c.flow_id == flow_id, trigger_inbox.c.dedupe_key == dedupe_key
            )
        ).scalar()
        return found

    def run_of(self, inbox_id: str) -> str | None:
        """The run an accepted event started (None: not started yet, or refused)."""
        with self.db.connect() as conn:
            run_id: str | None = conn.execute(
                sa.select(trigger_inbox.c.run_id).where(trigger_inbox.c.id == inbox_id)
            ).scalar()
        return run_id

    def pending(self, limit: int = 100) -> list[str]:
        """Accepted events not started yet, oldest first."""
        with reading(self.db) as conn:
            return list(
                conn.execute(
                    sa.select(trigger_inbox.c.id)
                    .where(trigger_inbox.c.status == "accepted")
                    .order_by(trigger_inbox.c.received_at, trigger_inbox.c.id)
                    .limit(limit)
                ).scalars()
            )

    # --- cron -----------------------------------------------------------------------------------------------

    def next_wake(self) -> datetime | None:
        """The earliest armed cron fire time (the scheduler sleeps until then)."""
        with reading(self.db) as conn:
            at = conn.execute(
                sa.select(sa.func.min(triggers.c.next_fire_at)).where(triggers.c.kind == "cron", triggers.c.enabled)
            ).scalar()
        return None if at is None else utc(at)

    def fire_due(self, now: datetime | None = None) -> int:
        """Fire every cron trigger that is due at ``now``; -> how many fires were accepted. Safe to call from
        several processes at once: each tick is fired once."""
        now = now or self._now()
        with reading(self.db) as conn:
            due = conn.execute(
                sa.select(triggers)
                .where(triggers.c.kind == "cron", triggers.c.enabled, triggers.c.next_fire_at <= now)
                .order_by(triggers.c.next_fire_at)
                .limit(500)
            ).all()
        fired = 0
        for row in due:
            fired += self._fire(_armed(row), now)
        return fired

    def _fire(self, trigger: Armed, now: datetime) -> int:
        config = CronTrigger.model_validate(trigger.config)
        assert trigger.next_fire_at is not None
        due = schedule.fires_between(
            config.cron, config.timezone, trigger.next_fire_at - timedelta(microseconds=1), now
        )
        on_time = [t for t in due if now - t <= MISFIRE_GRACE]
        missed = [t for t in due if now - t > MISFIRE_GRACE]
        fires = list(on_time)
        if missed and config.misfire == "run_once":
            fires.insert(0, missed[-1])
        if missed:
            log.warning(
                "cron trigger of flow %s missed %d tick(s) (the scheduler was not running); misfire: %s",
                trigger.flow_id,
                len(missed),
                config.misfire,
            )
        following = schedule.next_fire(config.cron, config.timezone, now)
        with self.db.begin() as conn:
            advanced = conn.execute(
                triggers.update()
                .where(triggers.c.id == trigger.id, triggers.c.next_fire_at == trigger.next_fire_at)
                .values(next_fire_at=following, last_fire_at=fires[-1] if fires else trigger.last_fire_at)
            )
            if advanced.rowcount != 1:
                return 0  # another scheduler fired these ticks
            for at in fires:
                event = {
                    "type": "cron",
                    "cron": config.cron,
                    "timezone": config.timezone,
                    "scheduled_at": at.isoformat(),
                    "fired_at": now.isoformat(),
                    "missed": at in missed,
                }
                self.accept(trigger, event, config.input, f"cron:{trigger.position}:{at.isoformat()}", conn)
        return len(fires)


def new_token() -> str:
    return secrets.token_urlsafe(24)  # 192 bits: unguessable


def _armed(row: Any) -> Armed:
    return Armed(
        id=row.id,
        flow_id=row.flow_id,
        version_id=row.version_id,
        kind=row.kind,
        position=row.position,
        config=dict(row.config or {}),
        token=row.token,
        next_fire_at=None if row.next_fire_at is None else utc(row.next_fire_at),
        last_fire_at=None if row.last_fire_at is None else utc(row.last_fire_at),
    )


def _webhook_tokens(conn: sa.Connection, flow_id: str) -> dict[int, str]:
    """The flow's armed webhook URL tokens, by trigger position."""
    query = sa.select(triggers.c.position, triggers.c.token).where(
        triggers.c.flow_id == flow_id, triggers.c.kind == "webhook", triggers.c.token.is_not(None)
    )
    return {int(position): str(token) for position, token in conn.execute(query).all()}
