"""Executing one claimed step attempt: inputs evaluated, secrets resolved at the last moment, executor called.

Secrets reach only the step's ``with``; their values are scrubbed from the input preview, the logs and the error
message before anything is recorded.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from engine.core.context import expression_context, step_input
from engine.core.plan import Plan
from engine.core.state import StepError
from engine.dsl.expression import ExpressionError, evaluate
from engine.runtime import payloads
from engine.runtime.orchestrator import Orchestrator, StepResult, Work
from engine.steps.bus import Bus, BusError
from engine.steps.call import StepCall
from engine.steps.dispatch import run_step


def execute(orchestrator: Orchestrator, work: Work, bus: Bus | None = None) -> StepResult:
    plan, state, key = work.plan, work.state, work.key
    declared = plan.flow.secrets
    values = orchestrator.secrets.resolve(declared, orchestrator.owner_of(plan.flow.id)) if declared else {}
    redact = tuple(sorted(values.values(), key=len, reverse=True))
    limit = orchestrator.config.preview_chars
    context = expression_context(plan, state, key)
    try:
        with_ = step_input(plan, state, key, values, context)
    except ExpressionError as e:
        message = _input_error(work, context, values, e)
        missing = [name for name in declared if name not in values]
        if missing:
            message += f" (secrets not set: {', '.join(missing)}; set them with `ionflux secrets set NAME`)"
        return StepResult(error=StepError(e.code, payloads.scrub(message, redact)))
    node = plan.nodes[key.node]
    net = tuple(str(p) for p in node.permissions.net) if node.permissions is not None else ()
    emit = _live(bus, work, orchestrator.owner_of(plan.flow.id), redact) if bus is not None else _ignore
    emit("step.started", {"node": key.node, "type": work.node_type})
    call = StepCall(
        key,
        work.attempt,
        work.node_type,
        with_,
        context,
        run_id=work.run_id,
        net=net,
        emit=emit,
        log=_LiveLog(emit) if bus is not None else [],
        secrets=redact,
        limits=_limits(node),
    )
    result = run_step(orchestrator.executors, call)
    logs = tuple((level, payloads.scrub(text, redact)) for level, text in call.log)
    input_preview = payloads.preview(with_, limit, redact)
    input_ref = _whole_input(orchestrator, with_, input_preview, redact)
    usage = payloads.redact_value(call.usage, redact) or None
    cost = _cost(plan, node.type, with_, call.usage)
    if isinstance(result, StepError):
        error = replace(result, message=payloads.scrub(result.message, redact))
        return StepResult(
            error=error, logs=logs, cost_cion=cost, usage=usage, input_preview=input_preview, input_ref=input_ref
        )
    output = payloads.redact_value(result, redact)
    return StepResult(
        output=output, logs=logs, cost_cion=cost, usage=usage, input_preview=input_preview, input_ref=input_ref
    )


def _whole_input(orchestrator: Orchestrator, with_: Any, preview: str | None, redact: tuple[str, ...]) -> str | None:
    """The blob holding the whole input (secrets blanked) when the preview had to cut it, so a user can read
    what the step was called with; None when the preview is the whole input, or the input is over the size
    limit (the preview is then what is kept)."""
    if preview is None or len(preview) < orchestrator.config.preview_chars:
        return None
    try:
        text = payloads.dumps(payloads.redact_value(with_, redact))
    except (TypeError, ValueError):
        return None
    if len(text) <= orchestrator.config.preview_chars:
        return None
    data = text.encode()
    return None if len(data) > orchestrator.config.max_payload_bytes else orchestrator.blobs.put(data)


def _cost(plan: Plan, node_type: str, with_: Mapping[str, Any], usage: Mapping[str, Any]) -> float:
    """The attempt's C-ION charge: what a metered executor measured, else the node type's flat price."""
    if "cost_cion" in usage:
        return float(usage["cost_cion"])
    if node_type not in plan.registry:
        return 0.0
    return float(plan.registry.get(node_type).cost(with_).cion)


def _limits(node: Any) -> dict[str, Any]:
    """The sandbox limits a node asks for: ``permissions.fuel``/``memory_mb`` and its ``timeout``."""
    asked: dict[str, Any] = {}
    permissions = getattr(node, "permissions", None)
    if permissions is not None:
        asked.update({k: v for k, v in (("fuel", permissions.fuel), ("memory_mb", permissions.memory_mb)) if v})
    timeout = getattr(node, "timeout", None)
    if timeout is not None:
        asked["timeout_seconds"] = timeout.seconds
    return asked


def _ignore(kind: str, data: Mapping[str, Any]) -> None:
    return None


def live_subject(run_id: str) -> str:
    """Where a run's live, not-recorded events go (an LLM step's tokens): ``ionflux.runs.<id>.live``."""
    return f"ionflux.runs.{run_id}.live"


LIVE_SUBJECTS = "ionflux.runs.*.live"  # every run's live events (an owner's stream picks its own by "owner")
LIVE_LOG_LINES = 200  # a step's first log lines go out live as well; all of them are recorded when it ends


def _live(bus: Bus, work: Work, owner: str, redact: tuple[str, ...]) -> Callable[[str, Mapping[str, Any]], None]:
    subject = live_subject(work.run_id)
    head = {"run_id": work.run_id, "owner": owner, "key": str(work.key), "attempt": work.attempt}

    def emit(kind: str, data: Mapping[str, Any]) -> None:
        # only the event's own data is redacted: a secret equal to an owner id must not blank the "owner" field
        event = {**head, "kind": kind, **payloads.redact_value(dict(data), redact)}
        with contextlib.suppress(BusError):  # live views are best effort; the recorded result is what counts
            bus.publish(subject, json.dumps(event, separators=(",", ":")).encode(), durable=False)

    return emit


class _LiveLog(list[tuple[str, str]]):
    """A step's log (``StepCall.log``) that also sends its first ``LIVE_LOG_LINES`` lines live (``step.log``), so a
    watcher sees a long step's progress while it runs; the recorded event keeps them all."""

    def __init__(self, emit: Callable[[str, Mapping[str, Any]], None]) -> None:
        super().__init__()
        self._emit = emit

    def append(self, line: tuple[str, str]) -> None:
        super().append(line)
        if len(self) <= LIVE_LOG_LINES:
            self._emit("step.log", {"level": line[0], "message": line[1]})  # executors bound their lines


def _input_error(work: Work, context: dict[str, Any], secrets: dict[str, str], error: ExpressionError) -> str:
    """Name the ``with`` field and the expression that failed, with the cause (not just "an expression failed")."""
    node = work.plan.nodes[work.key.node]
    fields = getattr(node, "with_", {})
    scope = {**context, "secrets": secrets}
    for name, value in fields.items():
        try:
            evaluate(value, scope)
        except ExpressionError as e:
            shown = value if isinstance(value, str) else payloads.dumps(value)
            shown = shown if len(shown) <= 200 else shown[:199] + "…"
            return f"{work.key}: with.{name}: {shown!r}: {e.message}"
    return f"{work.key}: with: {error.message}"
