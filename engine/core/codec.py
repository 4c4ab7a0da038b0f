"""Events to JSON and back: the form ``run_events`` stores and replays.

Round-tripping is exact for what the machine reads (keys, attempts, errors, timers, times, JSON payloads), so a
run rebuilt from its stored events is the run that was recorded (tests/test_core_codec.py).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from engine.core import events as ev
from engine.core.state import StepError, StepKey, Timer

KINDS: dict[str, type[ev.Event]] = {
    "run_started": ev.RunStarted,
    "step_succeeded": ev.StepSucceeded,
    "step_failed": ev.StepFailed,
    "timer_fired": ev.TimerFired,
    "approval_decided": ev.ApprovalDecided,
    "child_run_started": ev.ChildRunStarted,
    "child_run_finished": ev.ChildRunFinished,
    "cancel_requested": ev.CancelRequested,
    "pause_requested": ev.PauseRequested,
    "resume_requested": ev.ResumeRequested,
    "rerun_requested": ev.RerunRequested,
}
_NAMES = {cls: name for name, cls in KINDS.items()}


def kind_of(event: ev.Event) -> str:
    return _NAMES[type(event)]


def error_to_json(error: StepError | None) -> dict[str, Any] | None:
    return None if error is None else error.to_dict()


def error_from_json(data: dict[str, Any] | None) -> StepError | None:
    if data is None:
        return None
    retry_after = data.get("retry_after")
    return StepError(
        data["code"],
        data["message"],
        bool(data.get("retryable", False)),
        None if retry_after is None else float(retry_after),
    )


def timer_to_json(timer: Timer) -> dict[str, Any]:
    return {"kind": timer.kind, "key": str(timer.key), "attempt": timer.attempt}


def timer_from_json(data: dict[str, Any]) -> Timer:
    return Timer(data["kind"], StepKey.parse(data["key"]), int(data["attempt"]))


def event_to_json(event: ev.Event) -> dict[str, Any]:
    """The event's fields as JSON values (``at`` as ISO 8601 with its offset)."""
    out: dict[str, Any] = {}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, StepKey):
            value = str(value)
        elif isinstance(value, StepError):
            value = error_to_json(value)
        elif isinstance(value, Timer):
            value = timer_to_json(value)
        out[f.name] = value
    return out


def event_from_json(kind: str, data: dict[str, Any]) -> ev.Event:
    cls = KINDS[kind]
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "at":
            value = datetime.fromisoformat(value)
        elif f.name == "key":
            value = StepKey.parse(value)
        elif f.name == "error":
            value = error_from_json(value)
        elif f.name == "timer":
            value = timer_from_json(value)
        values[f.name] = value
    return cls(**values)
