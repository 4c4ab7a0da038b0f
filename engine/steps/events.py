"""``event.publish``: a JSON event on a bus subject (NATS, or the in-process bus when embedded).

The message body is the node's ``data`` as JSON. Its id is derived from run, step and attempt, so an attempt
re-run after a worker crash is dropped as a duplicate by JetStream (and by the in-process bus) instead of being
delivered twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.nodetypes.builtin.messaging import PUBLISH_SUBJECT
from engine.steps.bus import Bus, BusError
from engine.steps.call import StepCall, StepFailure

#: subjects IONFLUX itself uses (live run views); flows may not publish there
RESERVED_PREFIX = "ionflux."


def publish(call: StepCall, bus: Bus) -> Any:
    subject = str(call.with_["subject"])
    if not PUBLISH_SUBJECT.match(subject):
        raise StepFailure(
            "event.bad_subject",
            f"with.subject: {subject!r} is not a subject you can publish to",
            hint="use dot-separated tokens without spaces or wildcards, e.g. orders.created",
        )
    if subject.startswith(RESERVED_PREFIX):
        raise StepFailure(
            "event.bad_subject",
            f"with.subject: {subject!r} is reserved for IONFLUX's own events",
            hint=f"pick a subject that does not start with {RESERVED_PREFIX!r}",
        )
    try:
        body = json.dumps(call.with_.get("data"), allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise StepFailure("event.bad_data", f"with.data is not JSON: {e}") from None
    try:
        sequence = bus.publish(subject, body, msg_id=f"{call.run_id}/{call.key}/{call.attempt}")
    except BusError as e:
        raise StepFailure(
            "event.unavailable", str(e), retryable=True, hint="check that NATS is up (IONFLUX_NATS_URL)"
        ) from None
    call.log.append(("info", f"published {len(body)} bytes to {subject}" + (f" (#{sequence})" if sequence else "")))
    return {"subject": subject, "sequence": sequence}


def executor(bus: Bus) -> Callable[[StepCall], Any]:
    def run(call: StepCall) -> Any:
        return publish(call, bus)

    return run
