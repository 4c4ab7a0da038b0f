"""A test extension: node types that sleep, fail on purpose and keep a journal of every execution.

Loaded like any extension (``IONFLUX_EXTENSIONS=tests.ext_testing``), so the crash tests' worker processes run
the same executors as the in-process tests. The journal is a file each execution appends a line to: it counts
executions across processes (at-least-once execution is allowed; double *recording* is not).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.nodetypes.registry import NodeType, Registry
from engine.steps.call import StepCall, StepFailure
from engine.steps.registry import ExecutorRegistry

_ANY: dict[str, Any] = {"type": "object"}


def _journal(call: StepCall, what: str) -> None:
    path = call.with_.get("journal")
    if path:
        with Path(path).open("a") as f:
            f.write(f"{call.key} {call.attempt} {what}\n")


def sleep(call: StepCall) -> Any:
    _journal(call, "start")
    time.sleep(float(call.with_.get("seconds", 0.1)))
    _journal(call, "end")
    return {"slept": call.with_.get("seconds", 0.1), "value": call.with_.get("value")}


def flaky(call: StepCall) -> Any:
    """Fails (retryably) until attempt ``succeed_on``; ``succeed_on: 0`` fails every time, not retryably."""
    _journal(call, "start")
    succeed_on = int(call.with_.get("succeed_on", 2))
    if succeed_on == 0 or call.attempt < succeed_on:
        raise StepFailure("test.flaky", f"attempt {call.attempt} fails on purpose", retryable=succeed_on != 0)
    call.log.append(("info", f"succeeded on attempt {call.attempt}"))
    return {"attempt": call.attempt, "value": call.with_.get("value")}


def big(call: StepCall) -> Any:
    return {"blob": "x" * int(call.with_["size"])}


def returns(call: StepCall) -> Any:
    """Return something awkward: ``nan``, a ``set``, a ``tuple`` or a mapping with integer keys."""
    kind = call.with_["kind"]
    return {"nan": float("nan"), "set": {1, 2}, "tuple": (1, 2), "int_keys": {1: "one"}}[kind]


def register(types: Registry, executors: ExecutorRegistry) -> None:
    for name, summary, fn in (
        ("test.sleep", "Sleep, then return", sleep),
        ("test.flaky", "Fail until an attempt", flaky),
        ("test.big", "Return a large string", big),
        ("test.returns", "Return a value JSON represents badly or not at all", returns),
    ):
        types.register(NodeType(name, "test", summary, _ANY, _ANY))
        executors.register(name, fn)
    # in the catalog, with no executor in this installation: how a runtime refuses a flow it cannot run
    types.register(NodeType("test.unbuilt", "test", "A type whose executor is not installed", _ANY, _ANY))
