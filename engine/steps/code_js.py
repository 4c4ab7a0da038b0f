"""``code.js``: inline JavaScript, run by QuickJS compiled to WebAssembly (quickjs-rs on wasmtime).

The step's ``with.code`` defines ``main(input)``; ``with.input`` arrives as a JSON value and what ``main``
returns (JSON-serialisable, not ``undefined``, not a Promise) is the step's output. Each call gets its own
QuickJS instance (a fresh wasm linear memory, ~0.8 ms): nothing one step does is visible to another. The
language is ES2023 with its standard built-ins (``JSON``, ``Math``, ``Date``, ``RegExp``, ``Intl``-free) and a
``console`` whose lines become the step's log; there is no ``fetch``, no timers, no modules, no file system.

Limits: ``memory_mb`` (QuickJS's allocator refuses past it, and the wasm memory cannot grow past it),
``timeout_seconds`` (a wall-clock deadline QuickJS
checks between bytecode operations: one long native call, say filling a multi-million element array, can
overrun it until the memory limit stops it), ``log_bytes`` and ``output_bytes``. Fuel does not apply.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from engine.steps.call import StepCall, StepFailure
from engine.steps.sandbox import Limits, returned_json
from engine.steps.wasm import SandboxPolicy

STACK_BYTES = 1024 * 1024
WASM_HEADROOM = 4 * 1024 * 1024  # QuickJS's own structures, beyond what its allocator limit counts

# What every step's context gets before its code: a console feeding the step log, and the call into main.
PRELUDE = """
(() => {
  const json = (v) => { try { return JSON.stringify(v); } catch { return String(v); } };
  const show = (v) => typeof v === "string" ? v : json(v);
  const line = (level) => (...args) => __ionflux_log(level, args.map(show).join(" "));
  globalThis.console = Object.freeze({
    log: line("info"), info: line("info"), debug: line("debug"), warn: line("warning"), error: line("error"),
  });
})();
"""
CALL = """
(() => {
  if (typeof main !== "function") return "\\u0000no_main";
  const out = main(JSON.parse(%s));
  if (out === undefined) return "\\u0000undefined";
  if (out !== null && typeof out.then === "function") return "\\u0000promise";
  return JSON.stringify(out);
})()
"""
_REFUSED = {
    "no_main": ("code.no_main", "the code does not define a function main(input)", "add: function main(input) {…}"),
    "undefined": (
        "code.bad_output",
        "main(input) returned undefined: it has no return, or returns nothing on some path",
        "return a JSON value (null is allowed)",
    ),
    "promise": (
        "code.bad_output",
        "main(input) returned a Promise: code.js steps are synchronous (there is no network or timer to await)",
        "drop async/await; fetch data with an http.request node and pass it in as input",
    ),
}


class _Log:
    """The step's console, capped at ``limits.log_bytes``: past it, the code is stopped."""

    def __init__(self, lines: list[tuple[str, str]], cap: int) -> None:
        self.lines, self.cap, self.size, self.overflowed = lines, cap, 0, False

    def __call__(self, level: str, text: str) -> None:
        self.size += len(text.encode()) + 1
        if self.size > self.cap:
            self.overflowed = True
            raise RuntimeError("the step's log is full")
        self.lines.append((level, text))


def run(call: StepCall, policy: SandboxPolicy) -> Any:
    import quickjs_rs  # imported on first use: most processes never run a code.js step

    limits = policy.limits(call.limits)
    code = str(call.with_["code"])
    log = _Log(call.log, limits.log_bytes)
    payload = json.dumps(json.dumps(call.with_.get("input"), separators=(",", ":")))
    with quickjs_rs.Runtime(memory_limit=limits.memory_mb * 1024 * 1024, stack_limit=STACK_BYTES) as runtime:
        context = runtime.new_context(timeout=limits.timeout_seconds)
        _cap_linear_memory(context, limits.memory_mb * 1024 * 1024 + WASM_HEADROOM)
        context.register("__ionflux_log", log, is_async=False)
        phase = "prelude"
        started = time.monotonic()
        try:
            context.eval(PRELUDE)
            phase = "code"
            context.eval(code)
            phase = "call"
            text = context.eval(CALL % payload)
        except quickjs_rs.QuickJSError as e:
            raise _failure(e, log, limits, phase) from None
        except Exception as e:  # a wasmtime trap (deep recursion exhausts the wasm stack), or the log overflowed
            raise (_log_failure(limits) if log.overflowed else _trap(e)) from None
        finally:
            call.usage.update({"elapsed_ms": round((time.monotonic() - started) * 1000, 3)})
    if not isinstance(text, str):
        raise StepFailure("code.bad_output", f"main(input) returned {text!r}, which is not JSON")
    if text.startswith("\0"):
        code_, message, hint = _REFUSED[text[1:]]
        raise StepFailure(code_, message, hint=hint)
    return returned_json(text, limits)


def _cap_linear_memory(context: Any, limit: int) -> None:
    """QuickJS's own allocator limit does not see every allocation (a loop of large strings grew the wasm memory
    to 3 GiB past a 64 MiB limit): the wasm store gets a hard limit as well. quickjs-rs has no public way to set
    one, so this reaches into its context's instance; if that changes in a release, code.js refuses to run
    rather than run without a bound (a test covers it)."""
    try:
        store = context._engine_ctx._inst.store
    except AttributeError:
        raise StepFailure(
            "sandbox.unavailable",
            "code.js cannot bound the memory of this quickjs-rs release, so it does not run",
            hint="install the quickjs-rs version IONFLUX is locked to (uv sync --frozen)",
        ) from None
    store.set_limits(memory_size=limit)


def _failure(error: Exception, log: _Log, limits: Limits, phase: str) -> StepFailure:
    import quickjs_rs

    if log.overflowed:
        return _log_failure(limits)
    if isinstance(error, quickjs_rs.TimeoutError):
        return StepFailure(
            "sandbox.timeout",
            f"the code ran past its {limits.timeout_seconds:g} s deadline",
            hint="raise the node's timeout (within the operator's maximum), or do less per step",
        )
    if isinstance(error, quickjs_rs.MemoryLimitError) or _hit_memory_cap(error):
        return StepFailure(
            "sandbox.memory_limit",
            f"the code ran out of memory: it reached its {limits.memory_mb} MiB limit",
            hint="raise permissions.memory_mb (within the operator's maximum), or process the data in smaller parts",
        )
    if isinstance(error, quickjs_rs.JSError):
        return _js_error(error, phase)
    return StepFailure("code.error", f"the code failed: {error}")


def _hit_memory_cap(error: Exception) -> bool:
    """The wasm store's memory cap (``_cap_linear_memory``) reached: QuickJS cannot even build its error object
    and throws a bare ``Error: null`` with no stack (an ``Error`` the code throws always has one)."""
    return (
        getattr(error, "name", None) == "Error"
        and getattr(error, "message", None) == "null"
        and not getattr(error, "stack", None)
    )


def _js_error(error: Any, phase: str) -> StepFailure:
    name, message = error.name, error.message
    where = _where(error.stack or "", phase)
    if name == "InternalError" and "stack overflow" in message:
        return StepFailure("sandbox.stack_overflow", f"the code overflowed its call stack (deep recursion){where}")
    if name == "SyntaxError":
        return StepFailure("code.syntax", f"JavaScript syntax error{where}: {message}", hint="fix the code")
    hint = "fix the code; the step's input is in its input preview"
    if name == "ReferenceError" and message.split(" ")[0] in _ABSENT:
        hint = (
            "code.js has no network, timers, modules or process: fetch data with an http.request node and pass its "
            "output in as input"
        )
    return StepFailure("code.error", f"{name}: {message}{where}", hint=hint)


_ABSENT = {"fetch", "require", "process", "setTimeout", "setInterval", "XMLHttpRequest", "WebSocket", "Deno", "Bun"}
_FRAME = re.compile(r"at (?:(\S+) \()?eval_script:(\d+):\d+")


def _where(stack: str, phase: str) -> str:
    """Where in the step's code the error is, from QuickJS's stack. Its innermost frame gives the line where the
    failing function starts (not the failing statement); frames of IONFLUX's own call into main are skipped."""
    frames = [(name, int(line)) for name, line in _FRAME.findall(stack)]
    if phase == "call":
        frames = [(name, line) for name, line in frames if name not in ("", "<eval>", "<anonymous>")]
    if not frames:
        return ""
    name, line = frames[0]
    if name in ("", "<eval>", "<anonymous>"):
        return f" (line {line} of the code)"
    return f" (in {name}, defined at line {line} of the code)"


def _log_failure(limits: Limits) -> StepFailure:
    return StepFailure(
        "sandbox.log_too_large",
        f"the code wrote more than {limits.log_bytes:,} bytes to its log (console)",
        hint="log less: the log is for short progress and error messages",
    )


def _trap(error: Exception) -> StepFailure:
    text = str(error)
    if "call stack exhausted" in text or not text:
        return StepFailure("sandbox.stack_overflow", "the code overflowed its call stack (deep recursion)")
    return StepFailure("sandbox.trap", f"the code failed in the sandbox: {text.splitlines()[-1].strip()}")


def executor(policy: SandboxPolicy) -> Callable[[StepCall], Any]:
    def step(call: StepCall) -> Any:
        return run(call, policy)

    return step
