"""Triggers: arming per active version, the inbox (stored before acknowledged, deduplicated, started exactly once),
and cron firing (on time, after downtime by misfire policy, and exactly once with several schedulers)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.runtime import queries
from engine.runtime.runtime import Runtime
from engine.runtime.triggers import TriggerError, Triggers
from engine.store.db import make_engine
from engine.store.tables import trigger_inbox
from engine.store.tables import triggers as triggers_table
from tests.runtime_helpers import BACKENDS, backend_config, flow, running

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

FLOW = """
fluxgraph: 1
id: ticking
secrets: [hook_key]
inputs:
  type: object
  properties:
    who: {type: string, default: nobody}
triggers:
  - type: manual
  - type: webhook
    secret: hook_key
  - type: cron
    cron: "*/5 * * * *"
    timezone: Europe/Lisbon
    misfire: MISFIRE
    input: {who: cron}
  - type: event
    subject: orders.*.paid
nodes:
  - id: say
    type: text.template
    with: {template: "{{ inputs.who }} at {{ trigger.scheduled_at }}"}
outputs:
  said: "{{ nodes.say.output.text }}"
"""


def save(rt: Runtime, misfire: str = "skip", extra: str = "") -> str:
    return rt.orchestrator.save_flow(flow(FLOW.replace("MISFIRE", misfire) + extra), "ticking.yaml")[1]


def clocked(rt: Runtime, now: list[datetime]) -> Triggers:
    """The runtime's triggers with a clock the test moves."""
    return Triggers(rt.db, lambda version: rt.orchestrator.plan(version).flow, clock=lambda: now[0])


@pytest.fixture(params=BACKENDS)
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with running(request.param, tmp_path, start=False) as runtime:
        yield runtime


def test_activation_arms_the_versions_triggers_and_keeps_webhook_urls(rt: Runtime) -> None:
    now = [T0]
    triggers = clocked(rt, now)
    first = save(rt)
    armed = {t.kind: t for t in triggers.activate("ticking", first)}
    assert sorted(armed) == ["cron", "event", "webhook"]  # manual needs nothing armed
    assert armed["cron"].next_fire_at == datetime(2026, 11, 24, 9, 5, tzinfo=UTC)  # Lisbon is UTC in November
    assert armed["event"].config["subject"] == "orders.*.paid"
    token = armed["webhook"].token
    assert token is not None and len(token) >= 32 and triggers.by_token(token) is not None

    second = save(rt, "run_once")  # another version: its triggers replace the first's, the URL stays
    again = {t.kind: t for t in triggers.activate("ticking", second)}
    assert again["webhook"].token == token and again["cron"].version_id == second
    assert len(triggers.armed("ticking")) == 3

    rotated = triggers.rotate("ticking")
    assert rotated != token and triggers.by_token(token) is None and triggers.by_token(rotated) is not None
    triggers.deactivate("ticking")
    assert triggers.armed("ticking") == [] and triggers.by_token(rotated) is None
    with pytest.raises(TriggerError):
        triggers.rotate("ticking")
    # activated again, the flow has its webhook URL back: a sender configured with it keeps working
    back = {t.kind: t for t in triggers.activate("ticking", second)}
    assert back["webhook"].token == rotated and triggers.by_token(rotated) is not None


def test_an_accepted_event_starts_one_run_even_if_delivered_twice(rt: Runtime) -> None:
    triggers = rt.triggers
    hook = next(t for t in triggers.activate("ticking", save(rt)) if t.kind == "webhook")
    first = triggers.accept(hook, {"type": "webhook", "scheduled_at": "-"}, {"who": "ana"}, dedupe_key="delivery-1")
    again = triggers.accept(hook, {"type": "webhook", "scheduled_at": "-"}, {"who": "ana"}, dedupe_key="delivery-1")
    assert not first.duplicate and again.duplicate and again.inbox_id == first.inbox_id
    started = rt.dispatch_triggers()
    assert len(started) == 1 and rt.dispatch_triggers() == []  # started once, never again
    rt.start()
    assert str(rt.wait(started[0], 30)) == "succeeded"
    summary = queries.find_run(rt.db, started[0])
    assert summary is not None and summary.outputs == {"said": "ana at -"}
    with rt.db.connect() as conn:
        row = conn.execute(sa.select(trigger_inbox)).one()
    assert row.status == "started" and row.run_id == started[0] and row.kind == "webhook"


def test_an_input_the_flow_refuses_is_recorded_not_lost(rt: Runtime) -> None:
    hook = next(t for t in rt.triggers.activate("ticking", save(rt)) if t.kind == "webhook")
    rt.triggers.accept(hook, {"type": "webhook"}, {"who": 42})
    assert rt.dispatch_triggers() == []
    with rt.db.connect() as conn:
        row = conn.execute(sa.select(trigger_inbox)).one()
    assert row.status == "refused" and row.error["code"] == "run.input_invalid" and "who" in row.error["message"]


def test_cron_fires_on_time_and_the_run_sees_when(rt: Runtime) -> None:
    now = [T0]
    triggers = clocked(rt, now)
    triggers.activate("ticking", save(rt))
    assert triggers.fire_due(T0 + timedelta(minutes=4)) == 0  # not due yet
    assert triggers.fire_due(T0 + timedelta(minutes=5, seconds=2)) == 1
    assert triggers.fire_due(T0 + timedelta(minutes=5, seconds=3)) == 0  # the same tick is not fired twice
    assert triggers.next_wake() == T0 + timedelta(minutes=10)
    (run_id,) = rt.dispatch_triggers()
    rt.start()
    assert str(rt.wait(run_id, 30)) == "succeeded"
    summary = queries.find_run(rt.db, run_id)
    assert summary is not None and summary.outputs == {"said": "cron at 2026-11-24T09:05:00+00:00"}


@pytest.mark.parametrize(("misfire", "fires"), [("skip", 0), ("run_once", 1)])
def test_after_downtime_missed_ticks_follow_the_misfire_policy(rt: Runtime, misfire: str, fires: int) -> None:
    now = [T0]
    triggers = clocked(rt, now)
    triggers.activate("ticking", save(rt, misfire))
    back = T0 + timedelta(hours=3, minutes=2)  # 36 ticks were missed while no scheduler ran
    assert triggers.fire_due(back) == fires
    assert triggers.next_wake() == T0 + timedelta(hours=3, minutes=5)
    with rt.db.connect() as conn:
        rows = conn.execute(sa.select(trigger_inbox.c.trigger)).scalars().all()
    assert len(rows) == fires
    if fires:
        assert rows[0]["missed"] is True and rows[0]["scheduled_at"] == "2026-11-24T12:00:00+00:00"


def test_two_schedulers_fire_each_tick_of_a_simulated_hour_exactly_once(tmp_path: Path) -> None:
    every_minute = """
    fluxgraph: 1
    id: minutely
    triggers:
      - {type: cron, cron: "* * * * *"}
    nodes:
      - {id: a, type: data.set, with: {v: 1}}
    """
    with backend_config("postgres+redis", tmp_path) as config, Runtime(config) as rt:
        version = rt.orchestrator.save_flow(flow(FLOW.replace("MISFIRE", "skip")), "ticking.yaml")[1]
        minutely = rt.orchestrator.save_flow(flow(every_minute), "minutely.yaml")[1]
        start = [T0]
        setup = clocked(rt, start)
        setup.activate("ticking", version)
        setup.activate("minutely", minutely)
        engines = [make_engine(config.database_url, pool_size=2) for _ in range(2)]
        schedulers = [Triggers(e, lambda v: rt.orchestrator.plan(v).flow) for e in engines]
        errors: list[BaseException] = []

        def run(scheduler: Triggers, seed: int) -> None:
            jitter = random.Random(seed)
            try:
                for second in range(0, 3600 + 7, 7):  # a tick every 7 simulated seconds, 09:00 to 10:00:05
                    scheduler.fire_due(T0 + timedelta(seconds=second + jitter.random()))
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(s, i)) for i, s in enumerate(schedulers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        for e in engines:
            e.dispose()
        assert not errors, errors
        with rt.db.connect() as conn:
            rows = conn.execute(sa.select(trigger_inbox.c.flow_id, trigger_inbox.c.dedupe_key)).all()
    by_flow = {f: sorted(k for g, k in rows if g == f) for f in ("minutely", "ticking")}
    assert len(by_flow["minutely"]) == 60 and len(set(by_flow["minutely"])) == 60  # 09:01 .. 10:00
    assert len(by_flow["ticking"]) == 12 and len(set(by_flow["ticking"])) == 12  # 09:05 .. 10:00


def test_an_embedded_runtime_with_the_scheduler_fires_a_due_tick_and_runs_it(tmp_path: Path) -> None:
    with running("embedded", tmp_path, start=False) as rt:
        rt.triggers.activate("ticking", save(rt))
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        for at in (minute, minute + timedelta(minutes=1)):
            if datetime.now(UTC) - at <= timedelta(seconds=50):  # a tick that is due and on time
                break
        with rt.db.begin() as conn:  # as if the 5-minute schedule were due at that minute
            conn.execute(
                triggers_table.update()
                .where(triggers_table.c.kind == "cron")
                .values(next_fire_at=at, config=_every_minute)
            )
        rt.start(scheduler=True)
        deadline = datetime.now(UTC) + timedelta(seconds=75)
        while datetime.now(UTC) < deadline and not queries.list_runs(rt.db, limit=5):
            threading.Event().wait(0.1)
        (summary,) = queries.list_runs(rt.db, limit=5)
        assert str(rt.wait(summary.id, 30)) == "succeeded"
        assert queries.find_run(rt.db, summary.id).outputs == {"said": f"cron at {at.isoformat()}"}  # type: ignore[union-attr]


_every_minute = {"type": "cron", "cron": "* * * * *", "timezone": "UTC", "misfire": "skip", "input": {"who": "cron"}}


def test_the_trigger_commands(tmp_path: Path) -> None:
    import json

    from tests.cli_helpers import ionflux

    source = tmp_path / "ticking.yaml"
    source.write_text(flow(FLOW.replace("MISFIRE", "skip")))
    done = ionflux(tmp_path, "activate", str(source))
    assert done.returncode == 0 and "3 armed trigger(s)" in done.stdout, done.stdout + done.stderr
    listed = json.loads(ionflux(tmp_path, "triggers", "--json").stdout)
    assert [t["kind"] for t in listed] == ["webhook", "cron", "event"]
    cron = listed[1]
    assert len(cron["next_fires"]) == 3 and cron["what"] == "*/5 * * * * (Europe/Lisbon, misfire skip)"
    assert listed[0]["url"].startswith("http://127.0.0.1:8080/hooks/")
    rotated = ionflux(tmp_path, "triggers", "--rotate", "ticking")
    assert rotated.returncode == 0 and listed[0]["url"] not in rotated.stdout
    assert ionflux(tmp_path, "scheduler", "--seconds", "1").returncode == 0
    assert ionflux(tmp_path, "deactivate", "ticking").returncode == 0
    assert json.loads(ionflux(tmp_path, "triggers", "--json").stdout) == []
    missing = ionflux(tmp_path, "activate", "no-such-flow")
    assert missing.returncode == 5 and "error[" in missing.stdout


def test_concurrent_deliveries_of_one_event_store_it_once(rt: Runtime) -> None:
    hook = next(t for t in rt.triggers.activate("ticking", save(rt)) if t.kind == "webhook")
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        results.append(rt.triggers.accept(hook, {"type": "webhook"}, None, dedupe_key="same-delivery"))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4 and len({r.inbox_id for r in results}) == 1
    assert [r.duplicate for r in results].count(False) == 1
    with rt.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(trigger_inbox)).scalar_one() == 1
