"""``event.publish`` and the event bus: subject matching, the in-process bus, and the real NATS at 127.0.0.1:4222
(core subjects and a JetStream stream, whose sequence and duplicate detection a retried step relies on)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.core.state import StepKey
from engine.steps.bus import LocalBus, Message, NatsBus, matches
from engine.steps.call import StepCall, StepFailure
from engine.steps.events import publish
from tests.runtime_helpers import flow, running
from tests.services import need

NATS = "nats://127.0.0.1:4222"


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("orders.created", "orders.created", True),
        ("orders.*", "orders.created", True),
        ("orders.*", "orders.created.eu", False),
        ("orders.>", "orders.created.eu", True),
        ("orders.>", "orders", False),
        ("*.created", "orders.created", True),
        (">", "anything.at.all", True),
        ("orders.created", "orders.created.eu", False),
        ("orders.created.eu", "orders.created", False),
    ],
)
def test_subject_matching_follows_nats(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


def call(with_: dict[str, Any], attempt: int = 1) -> StepCall:
    return StepCall(StepKey("tell"), attempt, "event.publish", with_, run_id="01RUNID")


def test_the_local_bus_delivers_in_order_drops_duplicates_and_survives_a_broken_subscriber() -> None:
    bus = LocalBus()
    got: list[Message] = []
    bus.subscribe("orders.>", got.append)

    def broken(_: Message) -> None:
        raise ZeroDivisionError("a broken subscriber")

    bus.subscribe("orders.created", broken)  # logged, not raised into the publishing step
    first = publish(call({"subject": "orders.created", "data": {"id": 1}}), bus)
    again = publish(call({"subject": "orders.created", "data": {"id": 1}}), bus)  # the same attempt, re-run
    other = publish(call({"subject": "orders.created", "data": {"id": 2}}, attempt=2), bus)
    assert first == again == {"subject": "orders.created", "sequence": 1}
    assert other["sequence"] == 2
    assert [json.loads(m.data) for m in got] == [{"id": 1}, {"id": 2}]


@pytest.mark.parametrize(
    ("subject", "reason"),
    [("orders.*", "not a subject you can publish to"), ("a b", "not a subject"), ("ionflux.runs.x", "reserved")],
)
def test_bad_subjects_are_refused_with_the_field_named(subject: str, reason: str) -> None:
    with pytest.raises(StepFailure) as failure:
        publish(call({"subject": subject, "data": 1}), LocalBus())
    assert failure.value.code == "event.bad_subject" and reason in failure.value.message
    assert failure.value.message.startswith("with.subject")


def test_data_that_is_not_json_is_refused() -> None:
    with pytest.raises(StepFailure) as failure:
        publish(call({"subject": "a.b", "data": float("nan")}), LocalBus())
    assert failure.value.code == "event.bad_data"


def test_an_unreachable_nats_is_a_retryable_failure() -> None:
    bus = NatsBus("nats://127.0.0.1:9", timeout=0.5)  # nothing listens on port 9 (discard)
    try:
        with pytest.raises(StepFailure) as failure:
            publish(call({"subject": "a.b", "data": 1}), bus)
    finally:
        bus.close()
    assert failure.value.code == "event.unavailable" and failure.value.retryable


@pytest.fixture
def nats_bus() -> Iterator[NatsBus]:
    need("127.0.0.1", 4222, "NATS")
    bus = NatsBus(NATS)
    yield bus
    bus.close()


def test_core_nats_subjects_reach_a_subscriber(nats_bus: NatsBus) -> None:
    prefix = f"test{uuid.uuid4().hex[:10]}"
    got: list[Message] = []
    arrived = threading.Event()

    def receive(message: Message) -> None:
        got.append(message)
        arrived.set()

    nats_bus.subscribe(f"{prefix}.>", receive)
    out = publish(call({"subject": f"{prefix}.orders.created", "data": {"total": 12}}), nats_bus)
    assert out == {"subject": f"{prefix}.orders.created", "sequence": None}  # no stream: plain NATS, no sequence
    assert arrived.wait(5)
    assert got[0].subject == f"{prefix}.orders.created" and json.loads(got[0].data) == {"total": 12}


async def _stream(action: str, name: str, subject: str = "") -> Any:
    import nats

    nc = await nats.connect(NATS)
    try:
        js = nc.jetstream()
        if action == "add":
            await js.add_stream(name=name, subjects=[subject], duplicate_window=60)
            return None
        if action == "count":
            return (await js.stream_info(name)).state.messages
        await js.delete_stream(name)
        return None
    finally:
        await nc.close()


def test_a_jetstream_subject_gets_a_sequence_and_a_rerun_attempt_is_not_published_twice(nats_bus: NatsBus) -> None:
    name = f"TEST_{uuid.uuid4().hex[:10].upper()}"
    subject = f"{name.lower()}.orders"
    asyncio.run(_stream("add", name, f"{subject}.>"))
    try:
        first = publish(call({"subject": f"{subject}.created", "data": {"id": 1}}), nats_bus)
        rerun = publish(call({"subject": f"{subject}.created", "data": {"id": 1}}), nats_bus)  # after a crash
        retry = publish(call({"subject": f"{subject}.created", "data": {"id": 1}}, attempt=2), nats_bus)
        assert first["sequence"] == 1 and rerun["sequence"] == 1  # JetStream acknowledged the duplicate
        assert retry["sequence"] == 2
        assert asyncio.run(_stream("count", name)) == 2
    finally:
        asyncio.run(_stream("delete", name))


EVENT_FLOW = """
fluxgraph: 1
id: announce
nodes:
  - id: tell
    type: event.publish
    with: {subject: "SUBJECT", data: {order: "{{ inputs.order }}", total: 12.5}}
outputs:
  sequence: "{{ nodes.tell.output.sequence }}"
"""


@pytest.mark.parametrize("bus_kind", ["in-process", "nats"])
def test_a_run_publishes_and_a_subscriber_in_the_process_receives_it(bus_kind: str, tmp_path: Path) -> None:
    overrides: dict[str, Any] = {}
    if bus_kind == "nats":
        need("127.0.0.1", 4222, "NATS")
        overrides["nats_url"] = NATS
    subject = f"test{uuid.uuid4().hex[:10]}.orders.created"
    with running("embedded", tmp_path, **overrides) as rt:
        got: list[dict[str, Any]] = []
        arrived = threading.Event()

        def receive(m: Message) -> None:
            got.append(json.loads(m.data))
            arrived.set()

        rt.bus.subscribe(subject, receive)
        _, version = rt.orchestrator.save_flow(flow(EVENT_FLOW.replace("SUBJECT", subject)), "announce.yaml")
        run_id = rt.orchestrator.start_run(version, {"order": "A-17"})
        assert str(rt.wait(run_id, 20)) == "succeeded"
        assert arrived.wait(5)
    assert got == [{"order": "A-17", "total": 12.5}]
