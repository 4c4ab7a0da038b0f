"""Event triggers: the in-process bus (embedded), flow-to-flow chaining through ``event.publish``, and NATS
JetStream: events published while no IONFLUX process runs start their runs, once, when one starts."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.runtime import queries
from engine.runtime.runtime import Runtime
from engine.steps.bus import NatsBus
from engine.store.tables import trigger_inbox
from tests.runtime_helpers import backend_config, flow, running
from tests.services import need

NATS = "nats://127.0.0.1:4222"


def listener(prefix: str) -> str:
    return f"""
    fluxgraph: 1
    id: on-paid
    triggers:
      - {{type: event, subject: "{prefix}.orders.*.paid"}}
    nodes:
      - id: note
        type: text.template
        with: {{template: "order {{{{ trigger.data.id }}}} paid on {{{{ trigger.subject }}}}"}}
    outputs:
      note: "{{{{ nodes.note.output.text }}}}"
    """


def runs_of(rt: Runtime, flow_id: str, want: int, timeout: float = 30) -> list[queries.RunSummary]:
    """The flow's runs, once ``want`` of them have settled (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in queries.list_runs(rt.db, limit=50) if r.flow_id == flow_id]
        settled = [r for r in found if str(r.status) in ("succeeded", "failed")]
        if len(settled) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_an_event_on_the_in_process_bus_starts_the_flow_once(tmp_path: Path) -> None:
    with running("embedded", tmp_path) as rt:
        _, version = rt.orchestrator.save_flow(flow(listener("shop")), "on-paid.yaml")
        rt.triggers.activate("on-paid", version)
        rt.events.sync()
        body = json.dumps({"id": 1042}).encode()
        rt.bus.publish("shop.orders.eu.paid", body, msg_id="pay-1042")
        rt.bus.publish("shop.orders.eu.paid", body, msg_id="pay-1042")  # a retried publish
        rt.bus.publish("shop.orders.eu.refunded", body)  # another subject: nothing
        (run,) = runs_of(rt, "on-paid", 1)
        assert str(run.status) == "succeeded"
        assert queries.find_run(rt.db, run.id).outputs == {"note": "order 1042 paid on shop.orders.eu.paid"}  # type: ignore[union-attr]
        time.sleep(0.5)
        assert len(runs_of(rt, "on-paid", 1, timeout=0)) == 1


def test_a_flow_chains_to_another_through_event_publish(tmp_path: Path) -> None:
    producer = """
    fluxgraph: 1
    id: take-payment
    nodes:
      - id: announce
        type: event.publish
        with: {subject: "chain.orders.pt.paid", data: {id: 7}}
    """
    with running("embedded", tmp_path) as rt:
        _, version = rt.orchestrator.save_flow(flow(listener("chain")), "on-paid.yaml")
        rt.triggers.activate("on-paid", version)
        rt.events.sync()
        _, produced = rt.orchestrator.save_flow(flow(producer), "take-payment.yaml")
        assert str(rt.wait(rt.orchestrator.start_run(produced), 30)) == "succeeded"
        (run,) = runs_of(rt, "on-paid", 1)
        assert queries.find_run(rt.db, run.id).outputs == {"note": "order 7 paid on chain.orders.pt.paid"}  # type: ignore[union-attr]
        with rt.db.connect() as conn:
            kind = conn.execute(sa.select(trigger_inbox.c.kind)).scalar_one()
        assert kind == "event"


@pytest.fixture
def nats_names() -> Iterator[tuple[str, str]]:
    """A subject prefix and a stream name of this test's own; the stream is deleted afterwards."""
    need("127.0.0.1", 4222, "NATS")
    tag = uuid.uuid4().hex[:10]
    stream = f"IONFLUX_TEST_{tag}"
    yield f"t{tag}", stream
    import asyncio

    import nats

    async def cleanup() -> None:
        nc = await nats.connect(NATS)
        with contextlib.suppress(Exception):  # already gone
            await nc.jetstream().delete_stream(stream)
        await nc.close()

    asyncio.run(cleanup())


def test_events_published_while_ionflux_is_down_run_once_when_it_starts(
    tmp_path: Path, nats_names: tuple[str, str]
) -> None:
    prefix, stream = nats_names
    with backend_config("postgres+redis", tmp_path, nats_url=NATS, events_stream=stream) as config:
        with Runtime(config) as rt:  # activate: the stream and the durable consumer now exist
            _, version = rt.orchestrator.save_flow(flow(listener(prefix)), "on-paid.yaml")
            rt.triggers.activate("on-paid", version)
            rt.events.sync()
        # IONFLUX is down: publish two orders, one of them twice (a publisher's retry)
        publisher = NatsBus(NATS, stream=stream)
        try:
            subject = f"{prefix}.orders.eu.paid"
            first = publisher.publish(subject, json.dumps({"id": 1}).encode(), msg_id="order-1")
            again = publisher.publish(subject, json.dumps({"id": 1}).encode(), msg_id="order-1")
            publisher.publish(subject, json.dumps({"id": 2}).encode(), msg_id="order-2")
        finally:
            publisher.close()
        assert first is not None and again == first  # JetStream stored it, and dropped the duplicate
        with Runtime(config) as rt:  # IONFLUX comes back
            rt.start()
            found = runs_of(rt, "on-paid", 2)
            notes = sorted(queries.find_run(rt.db, r.id).outputs["note"] for r in found)  # type: ignore[union-attr]
            assert notes == [f"order 1 paid on {subject}", f"order 2 paid on {subject}"]
        with Runtime(config) as rt:  # and again: nothing is delivered twice
            rt.start()
            time.sleep(3)
            assert len(runs_of(rt, "on-paid", 2, timeout=0)) == 2


def test_a_deactivated_flow_leaves_no_consumer_and_does_not_run_what_came_meanwhile(
    tmp_path: Path, nats_names: tuple[str, str]
) -> None:
    import asyncio

    import nats
    from nats.js.errors import NotFoundError

    from engine.runtime.event_triggers import consumer_name

    prefix, stream = nats_names

    async def consumer_exists(name: str) -> bool:
        nc = await nats.connect(NATS)
        try:
            await nc.jetstream().consumer_info(stream, name)
            return True
        except NotFoundError:
            return False
        finally:
            await nc.close()

    with (
        backend_config("postgres+redis", tmp_path, nats_url=NATS, events_stream=stream) as config,
        Runtime(config) as rt,
    ):
        _, version = rt.orchestrator.save_flow(flow(listener(prefix)), "on-paid.yaml")
        (armed,) = rt.triggers.activate("on-paid", version)
        rt.events.sync()
        name = consumer_name(armed)
        assert asyncio.run(consumer_exists(name))
        # When the flow is deactivated, Then its durable consumer is deleted from the server
        rt.triggers.deactivate("on-paid")
        rt.events.sync()
        assert not asyncio.run(consumer_exists(name))
        # And an order paid while it is inactive does not run once it is activated again
        publisher = NatsBus(NATS, stream=stream)
        try:
            publisher.publish(f"{prefix}.orders.eu.paid", json.dumps({"id": 9}).encode(), msg_id="order-9")
        finally:
            publisher.close()
        rt.triggers.activate("on-paid", version)
        rt.start()
        time.sleep(3)
        assert runs_of(rt, "on-paid", 0, timeout=0) == []


def test_ionflux_publish_reaches_an_activated_flow(tmp_path: Path) -> None:
    """Embedded, as a user tries it: activate, publish (the event waits in the inbox), `ionflux up` runs it."""
    from tests.cli_helpers import ionflux

    source = tmp_path / "on-paid.yaml"
    source.write_text(flow(listener("cli")))
    assert ionflux(tmp_path, "activate", str(source)).returncode == 0
    published = ionflux(tmp_path, "publish", "cli.orders.eu.paid", '{"id": 5}', "--msg-id", "five")
    assert published.returncode == 0 and "for 1 armed event trigger" in published.stdout, published.stdout
    assert ionflux(tmp_path, "publish", "cli.orders.eu.paid", '{"id": 5}', "--msg-id", "five").returncode == 0
    bad = ionflux(tmp_path, "publish", "cli.orders.eu.paid", "{id: 5}")
    assert bad.returncode == 5 and "error[event.bad_data]" in bad.stdout
    assert ionflux(tmp_path, "up", "--seconds", "3").returncode == 0
    runs = json.loads(ionflux(tmp_path, "runs", "--json").stdout)
    assert [(r["flow_id"], r["status"]) for r in runs] == [("on-paid", "succeeded")]  # once, though sent twice
