"""Event triggers: one durable consumer per armed ``event`` trigger, feeding the trigger inbox.

With NATS, each armed trigger has a JetStream durable pull consumer (named after the flow, the trigger's position
and its subject) on the stream that captures its subject, IONFLUX's own stream when no other does. Messages
published while no IONFLUX process runs wait in the stream; when one starts, they are accepted into the inbox,
deduplicated by stream sequence (a redelivery is the same event), and only then acknowledged. Several processes
share a consumer, so each message reaches one of them. With the in-process bus (embedded), a subscription does
the same for the process's own publishes.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from engine.runtime import payloads
from engine.runtime.triggers import Armed, Triggers
from engine.steps.bus import Bus, BusError, Message
from engine.store import ids

log = logging.getLogger("ionflux.triggers")


class EventTriggers:
    def __init__(self, triggers: Triggers, bus: Bus, accepted: Callable[[], None] = lambda: None) -> None:
        self.triggers = triggers
        self.bus = bus
        self._accepted = accepted
        self._lock = threading.Lock()
        self._consumers: dict[str, tuple[Callable[[], None], str]] = {}  # consumer name -> (stop, subject)

    def sync(self) -> None:
        """Consume for every armed event trigger, and stop consuming for disarmed ones, deleting their durable
        consumers: a deactivated flow does not run, later, the events published while it was inactive (a process
        that stops, by contrast, keeps its consumers, so what is published while IONFLUX is down runs when it is
        back)."""
        wanted = {
            consumer_name(t): t for t in self.triggers.armed() if t.kind == "event" and t.config.get("enabled", True)
        }
        with self._lock:
            for name in set(self._consumers) - set(wanted):
                stop, subject = self._consumers.pop(name)
                stop()
                try:
                    self.bus.forget(subject, name)
                except BusError as e:  # the server is away: the consumer stays, and is only not read
                    log.warning("could not delete the consumer %s of a disarmed trigger: %s", name, e)
            for name, trigger in wanted.items():
                if name not in self._consumers:
                    subject = trigger.config["subject"]
                    armed_at = datetime.fromtimestamp(ids.id_time_ms(trigger.id) / 1000, UTC)  # a ULID's time
                    stop = self.bus.consume(subject, name, self._handler(trigger), since=armed_at)
                    self._consumers[name] = (stop, subject)

    def close(self) -> None:
        with self._lock:
            for stop, _ in self._consumers.values():
                stop()
            self._consumers.clear()

    def _handler(self, trigger: Armed) -> Callable[[Message], None]:
        def handle(message: Message) -> None:
            if message.subject.startswith("ionflux."):
                return  # IONFLUX's own traffic (live run views) never triggers flows
            current = next(
                (
                    t
                    for t in self.triggers.armed(trigger.flow_id)
                    if t.position == trigger.position and t.kind == "event"
                ),
                None,
            )
            if current is None:
                return  # disarmed since: the message is acknowledged and ignored
            self.triggers.accept(current, event_of(message), None, dedupe_key(current, message))
            self._accepted()

        return handle


def consumer_name(trigger: Armed) -> str:
    """A durable consumer's name: stable per flow, position and subject (NATS forbids '.', '*', '>' in it)."""
    digest = hashlib.sha256(f"{trigger.flow_id}\0{trigger.position}\0{trigger.config['subject']}".encode())
    return f"ionflux_{digest.hexdigest()[:20]}"


def event_of(message: Message) -> dict[str, Any]:
    """What a run sees as ``trigger``: the subject and the payload (JSON when it parses, else text)."""
    try:
        data: Any = payloads.loads(message.data)
    except ValueError:
        data = message.data.decode(errors="replace")
    return {
        "type": "event",
        "subject": message.subject,
        "data": data,
        "stream": message.stream,
        "sequence": message.sequence,
        "msg_id": message.msg_id,
        "received_at": datetime.now(UTC).isoformat(),
    }


def dedupe_key(trigger: Armed, message: Message) -> str | None:
    """A redelivered message is the same event: the stream sequence names it (JetStream), or the publisher's id.
    The in-process bus's counter restarts with the process, so it is never a key."""
    if message.stream is not None and message.sequence is not None:
        return f"event:{trigger.position}:{message.stream}:{message.sequence}"
    if message.msg_id is not None:
        return f"event:{trigger.position}:id:{message.msg_id}"
    return None
