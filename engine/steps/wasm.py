"""``wasm.run``: a registered WebAssembly transform, run in the sandbox.

The ABI (docs/guides/creating_transforms.md): the node's ``input`` as JSON on stdin; the output as one JSON value
on stdout; log lines on stderr (each becomes a step log line); exit code 0 for success, anything else is a
failure whose reason is the end of stderr. The module's manifest declares JSON Schemas for input and output,
checked before and after the call, and the limits it needs; a node may ask for other limits
(``permissions.fuel``, ``permissions.memory_mb``, ``timeout``), all within the operator's maxima.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jsonschema

from engine.steps.call import StepCall, StepFailure
from engine.steps.sandbox import Limits, Sandbox

LIMIT_FIELDS = ("fuel", "memory_mb", "timeout_seconds", "output_bytes", "log_bytes")


@dataclass(frozen=True, slots=True)
class Transform:
    """What the registry hands the executor for ``name@version``."""

    ref: str
    wasm: bytes
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    output_schema: Mapping[str, Any] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)  # what the module's manifest asks for


@dataclass(frozen=True, slots=True)
class SandboxPolicy:
    """The operator's defaults and maxima for every sandboxed step."""

    defaults: Limits = field(default_factory=Limits)
    maxima: Limits = field(
        default_factory=lambda: Limits(
            fuel=50_000_000_000, timeout_seconds=300, memory_mb=1024, output_bytes=64 * 1024 * 1024, log_bytes=1 << 20
        )
    )

    def limits(self, *asks: Mapping[str, Any]) -> Limits:
        """The defaults, overridden by each ask in turn (manifest, then node); an ask over a maximum fails."""
        limits = self.defaults
        for ask in asks:
            for name in LIMIT_FIELDS:
                value = ask.get(name)
                if value is None:
                    continue
                ceiling = getattr(self.maxima, name)
                if name == "timeout_seconds":
                    value = min(value, ceiling)  # a long node timeout still bounds the step; the sandbox caps it
                elif value > ceiling:
                    raise StepFailure(
                        "sandbox.limit_too_high",
                        f"{name} {value:,} is over the operator's maximum of {ceiling:,}",
                        hint=f"ask for at most {ceiling:,}, or have the operator raise IONFLUX_SANDBOX_MAX_* settings",
                    )
                limits = replace(limits, **{name: value})
        return limits


Resolver = Callable[[str], Transform]


def run(call: StepCall, sandbox: Sandbox, resolve: Resolver, policy: SandboxPolicy) -> Any:
    transform = resolve(str(call.with_["module"]))
    value = call.with_.get("input")
    _check(value, transform.input_schema, "module.input_invalid", f"the input does not match {transform.ref}'s")
    limits = policy.limits(transform.limits, call.limits)
    digest = sandbox.load(transform.wasm)
    outcome = sandbox.run(digest, json.dumps(value, separators=(",", ":")).encode(), limits)
    for line in outcome.stderr.decode(errors="replace").splitlines():
        if line.strip():
            call.log.append(("info", line))
    call.usage.update({"fuel": outcome.fuel_used, "elapsed_ms": outcome.elapsed_ms, "module": transform.ref})
    try:
        output = json.loads(outcome.stdout)
    except json.JSONDecodeError as e:
        shown = outcome.stdout[:200].decode(errors="replace")
        raise StepFailure(
            "sandbox.bad_output",
            f"{transform.ref} wrote something that is not JSON to stdout ({e.msg} at byte {e.pos}): {shown!r}",
            hint="a transform writes exactly one JSON value to stdout; logs go to stderr",
        ) from None
    except UnicodeDecodeError as e:
        raise StepFailure(
            "sandbox.bad_output",
            f"{transform.ref} wrote bytes that are not UTF-8 to stdout (at byte {e.start})",
            hint="a transform writes exactly one JSON value, UTF-8 encoded, to stdout",
        ) from None
    _check(output, transform.output_schema, "module.output_invalid", f"the output does not match {transform.ref}'s")
    return output


def _check(value: Any, schema: Mapping[str, Any], code: str, what: str) -> None:
    if not schema:
        return
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(top level)"
        raise StepFailure(code, f"{what} schema at {where}: {error.message}")


def executor(sandbox: Sandbox, resolve: Resolver, policy: SandboxPolicy) -> Callable[[StepCall], Any]:
    def step(call: StepCall) -> Any:
        return run(call, sandbox, resolve, policy)

    return step
