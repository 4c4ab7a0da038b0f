"""``ionflux activate|deactivate|triggers|scheduler``: arm a flow version's triggers, see them (with the next cron
fire times and webhook URLs), and run the cron scheduler as its own process (engine.runtime.triggers)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from rich.text import Text

from api.run_commands import _runtime, _wait_for_signal, guarded
from api.settings import Settings
from engine.dsl import schedule
from engine.errors import IonfluxError
from engine.runtime.event_triggers import dedupe_key, event_of
from engine.runtime.runtime import Runtime
from engine.runtime.triggers import Armed
from engine.steps.bus import Message, NatsBus

SHOWN_FIRES = 3


@guarded
def cmd_activate(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    settings = Settings()
    with _runtime(settings) as runtime:
        flow_id, version = _target(runtime, args.flow, args.version)
        armed = runtime.triggers.activate(flow_id, version)
        console.print(f"flow {flow_id} active at version {version[:24]}…: {len(armed)} armed trigger(s)")
        _show(console, armed, settings, as_json=False)
    return 0


@guarded
def cmd_deactivate(args: argparse.Namespace) -> int:
    with _runtime(Settings()) as runtime:
        runtime.triggers.deactivate(args.flow)
    Console(highlight=False).print(f"flow {args.flow} inactive: its triggers are disarmed (manual runs still work)")
    return 0


@guarded
def cmd_triggers(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    settings = Settings()
    with _runtime(settings) as runtime:
        if args.rotate:
            token = runtime.triggers.rotate(args.rotate, args.position)
            console.print(f"new webhook URL for {args.rotate}: {_hook_url(settings, token)} (the old one is dead)")
            return 0
        _show(console, runtime.triggers.armed(args.flow), settings, as_json=args.json)
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """Fire cron triggers (exactly once, however many schedulers run) and start the runs of accepted events."""
    console = Console(highlight=False, stderr=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings()
    with _runtime(settings) as runtime:
        console.print(f"ionflux scheduler {runtime.worker_id}: firing cron triggers on {_where(settings)}")
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while deadline is None or time.monotonic() < deadline:
            try:
                runtime.triggers.fire_due()
                runtime.dispatch_triggers()
                wake = runtime.triggers.next_wake()
            except Exception as e:  # the database away for a moment: keep going
                logging.getLogger("ionflux.scheduler").warning("%s: %s", type(e).__name__, e)
                wake = None
            pause = 1.0 if wake is None else min(1.0, max(0.05, (wake - datetime.now(UTC)).total_seconds()))
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            _wait_for_signal(pause)
    return 0


@guarded
def cmd_publish(args: argparse.Namespace) -> int:
    """Publish an event, as a flow's event.publish step would (to try event triggers)."""
    console = Console(highlight=False)
    settings = Settings()
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as e:
        raise IonfluxError(
            f"the event data is not JSON: {e.msg} at column {e.colno}",
            hint="quote it for the shell: ionflux publish orders.eu.paid '{\"id\": 1042}'",
            code="event.bad_data",
        ) from None
    payload = json.dumps(data, separators=(",", ":")).encode()
    if settings.nats_url:
        bus = NatsBus(settings.nats_url, stream=settings.events_stream)
        try:
            sequence = bus.publish(args.subject, payload, msg_id=args.msg_id)
        finally:
            bus.close()
        where = f"stream sequence {sequence}" if sequence is not None else "plain NATS (no stream captures it)"
        console.print(f"published {args.subject} to {settings.nats_url}: {where}")
        return 0
    # embedded: the bus lives inside `ionflux up`, so the event goes straight into the trigger inbox, where that
    # process (or the next one to start) picks it up
    with _runtime(settings) as runtime:
        message = Message(args.subject, payload, None, args.msg_id)
        armed = runtime.triggers.for_subject(args.subject)
        for trigger in armed:
            runtime.triggers.accept(trigger, event_of(message), None, dedupe_key(trigger, message))
    console.print(f"accepted {args.subject} for {len(armed)} armed event trigger(s) (embedded: no NATS configured)")
    return 0


def _target(runtime: Runtime, target: str, version: str | None) -> tuple[str, str]:
    """A flow file (stored, then activated) or the id of a stored flow (its latest version, or ``version``)."""
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return runtime.orchestrator.save_flow(path.read_text("utf-8"), str(path))
    return target, version or runtime.orchestrator.latest_version(target)


def _show(console: Console, armed: list[Armed], settings: Settings, *, as_json: bool) -> None:
    rows = [_describe(t, settings) for t in armed]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(Text("no armed triggers: `ionflux activate FLOW.yaml` arms a flow's triggers", style="dim"))
        return
    table = Table(box=None, pad_edge=False)
    for column in ("flow", "#", "kind", "what", "next"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["flow"], str(row["position"]), row["kind"], row["what"], "\n".join(row.get("next_fires", [])))
    console.print(table)


def _describe(trigger: Armed, settings: Settings) -> dict[str, Any]:
    row: dict[str, Any] = {
        "flow": trigger.flow_id,
        "version": trigger.version_id,
        "position": trigger.position,
        "kind": trigger.kind,
    }
    config = trigger.config
    if trigger.kind == "cron":
        row["what"] = f"{config['cron']} ({config.get('timezone', 'UTC')}, misfire {config.get('misfire', 'skip')})"
        fires = _next_fires(trigger)
        zone = ZoneInfo(config.get("timezone", "UTC"))
        row["next_fires"] = [t.isoformat() for t in fires]
        row["next_fires_local"] = [t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z") for t in fires]
        row["last_fire"] = trigger.last_fire_at.isoformat() if trigger.last_fire_at else None
    elif trigger.kind == "webhook":
        row["what"] = row["url"] = _hook_url(settings, trigger.token or "")
    else:
        row["what"] = row["subject"] = config["subject"]
    return row


def _next_fires(trigger: Armed) -> list[datetime]:
    fires: list[datetime] = []
    at = trigger.next_fire_at
    while at is not None and len(fires) < SHOWN_FIRES:
        fires.append(at)
        at = schedule.next_fire(trigger.config["cron"], trigger.config.get("timezone", "UTC"), at)
    return fires


def _hook_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/hooks/{token}"


def _where(settings: Settings) -> str:
    return settings.database_url or str(settings.home / "ionflux.db")
