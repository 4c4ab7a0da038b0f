"""A failed run's failed step, with everything a diagnosis needs, and its replay with a changed flow.

:func:`failed_step` gathers the context of the step that failed a run: the error (code, message, whether trying
again could help), the node's definition as written (secrets are ``{{ secrets.NAME }}`` references there, never
values), the expression context it ran with (inputs, upstream outputs, loop item; rebuilt from the run's event
log), its input as recorded (scrubbed), its logs, the attempts made, the HTTP status of a refused request.

:func:`replay` re-executes that step, alone, with the node as a changed flow defines it, on the same recorded
context, through the worker's own code path (``engine.runtime.execute``: expressions, secrets at the last moment,
the sandbox for code steps, the network policy). Nothing is recorded in the run: it is the proof that a fix works
before the run is resumed. A step with outside effects (a POST, an email, a chat message) is only executed when
it is safe to repeat (its type has no outside effect, an HTTP read, an ``idempotency_key``) or the caller allows
it; otherwise only everything up to the call is checked (a dry replay).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from engine.core.context import expression_context, step_input
from engine.core.plan import Plan, compile_plan
from engine.core.state import RunState, StepError, StepKey, StepStatus
from engine.dsl.expression import ExpressionError, evaluate
from engine.dsl.model import ForeachNode
from engine.dsl.source import parse_yaml
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.runtime import payloads
from engine.runtime.execute import execute
from engine.runtime.orchestrator import Orchestrator, Work
from engine.store.tables import flow_versions, run_steps, runs

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# what a step reaches outside IONFLUX: repeating it may repeat an effect (an LLM call or a sandbox only costs)
EFFECT_CAPABILITIES = frozenset({"net", "smtp", "bus", "flows", "human"})
REPLAY_ATTEMPTS = 5  # at most, whatever the node's retry says
REPLAY_DELAY_CAP = 1.0  # seconds between replayed attempts (a proof, not a production schedule)
_STATUS = re.compile(r"\banswered (\d{3})\b")


class FailureError(IonfluxError):
    """Raised when a run has no failed step to heal (it did not fail, or it failed before any step ran)."""

    code = "heal.no_failed_step"


@dataclass(frozen=True)
class FailedStep:
    run_id: str
    flow_id: str
    version_id: str
    owner_id: str
    key: str  # ``node`` or ``loop[2].node``
    node_id: str
    node_type: str
    error: StepError
    attempts: int
    node: dict[str, Any]  # as written in the version's YAML
    source: str  # the version's YAML
    context: dict[str, Any]  # inputs, trigger, run, nodes (upstream outputs), item/index
    input_preview: str | None
    logs: tuple[tuple[str, str], ...]
    http_status: int | None = None
    run_status: str = "failed"

    @property
    def upstream(self) -> dict[str, Any]:
        """The recorded outputs of the nodes that ran before the failed step (``{id: {status, output}}``)."""
        nodes = self.context.get("nodes")
        return dict(nodes) if isinstance(nodes, Mapping) else {}


@dataclass(frozen=True)
class Replay:
    """What re-executing the failed step with a changed node gave."""

    executed: bool  # False: a dry replay (inputs evaluated and checked, the outside call not made)
    ok: bool
    output: Any = None
    error: StepError | None = None
    attempts: int = 0
    logs: tuple[tuple[str, str], ...] = ()
    cost_cion: float = 0.0
    seconds: float = 0.0
    why_dry: str = ""
    input: Any = field(default=None, repr=False)  # the evaluated `with`, secrets scrubbed

    def describe(self) -> str:
        if not self.executed:
            verdict = (
                "inputs check out" if self.ok else f"fails before the call: {self.error.message if self.error else ''}"
            )
            return f"dry replay ({self.why_dry}): {verdict}"
        if self.ok:
            return f"replayed on the recorded input: succeeded in {self.attempts} attempt(s), {self.seconds:.2f} s"
        assert self.error is not None
        return f"replayed on the recorded input: still fails ({self.error.code}): {self.error.message}"


def failed_step(orchestrator: Orchestrator, run_id: str) -> FailedStep:
    """The step that failed run ``run_id`` (the first failed, unhandled one), with its context."""
    with orchestrator.db.connect() as conn:
        run = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
        if run is None:
            raise FailureError(
                f"there is no run {run_id!r}", hint="`ionflux runs` lists runs", code="heal.run_not_found"
            )
        source = conn.execute(sa.select(flow_versions.c.source).where(flow_versions.c.id == run["version_id"])).scalar()
    state = orchestrator.state(run_id)
    key = _failed_key(state)
    if key is None:
        raise FailureError(
            f"run {run_id} has no failed step (it is {run['status']})",
            hint="only a failed run can be healed; a cancelled one can be re-run as it is",
        )
    step = state.step(key)
    assert step.error is not None
    plan = orchestrator.plan(str(run["version_id"]))
    node = plan.nodes[key.node]
    row = _last_attempt(orchestrator, run_id, str(key))
    doc = parse_yaml(str(source), "<recorded flow>").data
    return FailedStep(
        run_id=run_id,
        flow_id=str(run["flow_id"]),
        version_id=str(run["version_id"]),
        owner_id=orchestrator.owner_of(str(run["flow_id"])),
        key=str(key),
        node_id=key.node,
        node_type=node.type,
        error=step.error,
        attempts=step.attempt,
        node=_raw_node(doc, key.node),
        source=str(source),
        context=_plain(expression_context(plan, state, key)),
        input_preview=row.get("input_preview") if row else None,
        logs=tuple((str(level), str(text)) for level, text in (row.get("logs") or [])) if row else (),
        http_status=_http_status(step.error),
        run_status=str(run["status"]),
    )


def _failed_key(state: RunState) -> StepKey | None:
    """The step whose failure failed the run: the first to fail, and inside a loop the iteration's step rather
    than the loop it failed (same moment, more specific)."""
    failed = [
        (s.finished_at.isoformat() if s.finished_at else "", -len(k.frames), str(k))
        for k, s in state.steps.items()
        if s.status == StepStatus.FAILED and not s.handled and s.error is not None
    ]
    return StepKey.parse(min(failed)[2]) if failed else None


def _last_attempt(orchestrator: Orchestrator, run_id: str, key: str) -> dict[str, Any] | None:
    query = (
        sa.select(run_steps.c.input_preview, run_steps.c.logs)
        .where(run_steps.c.run_id == run_id, run_steps.c.key == key)
        .order_by(run_steps.c.run_attempt.desc(), run_steps.c.attempt.desc())
        .limit(1)
    )
    with orchestrator.db.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row is not None else None


def _raw_node(doc: Any, node_id: str) -> dict[str, Any]:
    def walk(nodes: Any) -> dict[str, Any] | None:
        for node in nodes if isinstance(nodes, list) else ():
            if isinstance(node, dict):
                if node.get("id") == node_id:
                    return node
                found = walk(node.get("do"))
                if found is not None:
                    return found
        return None

    if isinstance(doc, dict):
        found = walk(doc.get("nodes")) or walk(doc.get("on_failure"))
        if found is not None:
            return found
    return {"id": node_id}


def _http_status(error: StepError) -> int | None:
    if not error.code.startswith("http."):
        return None
    found = _STATUS.search(error.message)
    return int(found.group(1)) if found else None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- replay ---------------------------------------------------------------------------------------------------


def _replay_loop(node: ForeachNode, plan: Plan, state: RunState, key: StepKey) -> Replay:
    """A foreach's own work is evaluating its items into a list (its iterations are steps of their own)."""
    started = time.monotonic()
    try:
        items = evaluate(node.items, expression_context(plan, state, key))
    except ExpressionError as e:
        return Replay(True, False, error=StepError(e.code, f"{key}: items: {e.message}"), attempts=1)
    if not isinstance(items, list | tuple):
        error = StepError("foreach.items_not_list", f"{key}: items evaluated to {type(items).__name__}, not a list")
        return Replay(True, False, error=error, attempts=1, seconds=time.monotonic() - started)
    return Replay(True, True, output={"items": len(items)}, attempts=1, seconds=time.monotonic() - started)


def safe_to_repeat(capabilities: frozenset[str], with_: Mapping[str, Any]) -> str:
    """ "" when executing a step again repeats no outside effect; else why it would (for the dry replay)."""
    outside = capabilities & EFFECT_CAPABILITIES
    if not outside:
        return ""
    if outside == {"net"} and str(with_.get("method", "GET")).upper() in SAFE_METHODS:
        return ""
    if outside == {"net"} and with_.get("idempotency_key"):
        return ""
    return f"it reaches outside ({', '.join(sorted(outside))}) and is not marked safe to repeat"


def replay(
    orchestrator: Orchestrator,
    failed: FailedStep,
    source: str,
    *,
    allow_effects: bool = False,
    delay_cap: float = REPLAY_DELAY_CAP,
) -> Replay:
    """Re-execute ``failed``'s step as the flow ``source`` defines it, on the recorded context (nothing recorded).
    The node's retry policy is honoured (at most :data:`REPLAY_ATTEMPTS`, delays capped at ``delay_cap``)."""
    flow = load_flow(source, "<fixed flow>", registry=orchestrator.registry)
    orchestrator.check_runnable(flow)
    plan = compile_plan(flow, orchestrator.registry)
    state = orchestrator.state(failed.run_id)
    key = StepKey.parse(failed.key)
    if key.node not in plan.nodes:
        raise FailureError(
            f"the fixed flow has no node {key.node!r}", hint="a fix changes the failed node; it cannot remove it"
        )
    node = plan.nodes[key.node]
    if isinstance(node, ForeachNode):
        return _replay_loop(node, plan, state, key)
    declared = plan.flow.secrets
    secrets = orchestrator.secrets.resolve(declared, failed.owner_id) if declared else {}
    redact = tuple(sorted(secrets.values(), key=len, reverse=True))
    started = time.monotonic()
    try:
        with_ = step_input(plan, state, key, secrets, expression_context(plan, state, key))
    except ExpressionError as e:
        error = StepError(e.code, payloads.scrub(f"{key}: {e.message}", redact))
        return Replay(
            False, False, error=error, why_dry="its inputs do not evaluate", seconds=time.monotonic() - started
        )
    shown = payloads.redact_value(with_, redact)
    capabilities = plan.registry.get(node.type).capabilities if node.type in plan.registry else frozenset()
    unsafe = safe_to_repeat(capabilities, with_ if isinstance(with_, Mapping) else {})
    if unsafe and not allow_effects:
        return Replay(False, True, why_dry=unsafe, input=shown, seconds=time.monotonic() - started)
    tries = min(node.retry.max_attempts, REPLAY_ATTEMPTS) if node.retry is not None else 1
    result, attempt, cost = None, 0, 0.0
    logs: list[tuple[str, str]] = []
    for attempt in range(1, tries + 1):
        result = execute(orchestrator, Work(failed.run_id, key, attempt, node.type, plan, state))
        logs.extend(result.logs)
        cost += result.cost_cion
        if result.error is None or not result.error.retryable:
            break
        if attempt < tries:
            assert node.retry is not None
            wait = node.retry.initial_delay.seconds * (node.retry.factor ** (attempt - 1))
            time.sleep(min(max(wait, result.error.retry_after or 0.0), delay_cap))
    assert result is not None
    return Replay(
        True,
        result.error is None,
        output=result.output,
        error=result.error,
        attempts=attempt,
        logs=tuple(logs),
        cost_cion=cost,
        seconds=time.monotonic() - started,
        input=shown,
    )
