"""``code.python``: inline Python, run by CPython compiled to a WebAssembly component (componentize-py).

The step's ``with.code`` defines ``main(input)``; ``with.input`` arrives as a JSON value and what ``main``
returns (JSON-serialisable) is the step's output; ``print`` goes to the step's log. Each call gets a fresh
instance of the component (~0.5 ms: the interpreter is pre-initialised), so nothing one step does is visible to
another. Python 3.14 with the standard modules the guest bundles (``guests/python/guest.py``); no network, no file
system, no environment, no processes or threads. Limits: fuel, a wall-clock deadline, memory, log and output size.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.steps import python_component
from engine.steps.call import StepCall, StepFailure
from engine.steps.sandbox import Limits, Sandbox, returned_json
from engine.steps.wasm import SandboxPolicy

MODULES = (
    "base64, binascii, bisect, calendar, collections, copy, csv, dataclasses, datetime, decimal, difflib, enum, "
    "fractions, functools, hashlib, heapq, hmac, html, io, itertools, json, math, operator, pprint, random, re, "
    "statistics, string, struct, textwrap, time, typing, unicodedata, urllib.parse, uuid, xml.etree.ElementTree, zlib"
)


def run(call: StepCall, sandbox: Sandbox, policy: SandboxPolicy) -> Any:
    limits = policy.limits(call.limits)
    try:
        key = sandbox.load_component(python_component.path())  # built once per machine, compiled once per process
    except python_component.ComponentBuildError as e:
        raise StepFailure(e.code, e.message, hint=e.hint) from None
    payload = json.dumps(call.with_.get("input"), separators=(",", ":"))
    outcome = sandbox.call_component(key, python_component.EXPORT, (str(call.with_["code"]), payload), limits)
    for line in outcome.logs.decode(errors="replace").splitlines():
        if line.strip():
            call.log.append(("info", line))
    call.usage.update({"fuel": outcome.fuel_used, "elapsed_ms": outcome.elapsed_ms})
    if outcome.value.tag != "ok":
        raise _failure(json.loads(outcome.value.payload), limits)
    text: str = outcome.value.payload
    return returned_json(text, limits)


def _failure(error: dict[str, Any], limits: Limits) -> StepFailure:
    kind, name, message, line = error["kind"], error["type"], error["message"], error["line"]
    where = f" (line {line} of the code)" if line else ""
    if kind == "no_main":
        return StepFailure("code.no_main", message, hint="add: def main(input): return input")
    if kind == "bad_output":
        return StepFailure("code.bad_output", message, hint="return dicts, lists, strings, numbers, booleans or None")
    if name == "MemoryError":
        return StepFailure(
            "sandbox.memory_limit",
            f"the code ran out of memory{where}: it reached its {limits.memory_mb} MiB limit",
            hint="raise permissions.memory_mb (within the operator's maximum), or process the data in smaller parts",
        )
    if name == "RecursionError":
        return StepFailure("sandbox.stack_overflow", f"the code recursed too deeply{where}: {message}")
    if name == "SyntaxError":
        return StepFailure("code.syntax", f"Python syntax error{where}: {message}", hint="fix the code")
    hint = "fix the code; the step's input is in its input preview"
    if name in ("ModuleNotFoundError", "ImportError"):
        hint = f"code.python has no network, files or processes; its standard modules are: {MODULES}"
    elif name in ("PermissionError", "FileNotFoundError", "OSError"):
        hint = "code.python has no network, files or environment: pass what the code needs in as input"
    return StepFailure("code.error", f"{name}: {message}{where}", hint=hint)


def executor(sandbox: Sandbox, policy: SandboxPolicy) -> Callable[[StepCall], Any]:
    def step(call: StepCall) -> Any:
        return run(call, sandbox, policy)

    return step
