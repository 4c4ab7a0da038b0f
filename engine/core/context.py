"""The names an expression sees while a run is in flight: inputs, trigger, run, nodes, item/index.

``nodes`` is a lazy mapping: a step inside loop iteration 3 reading ``nodes.draft`` gets the ``draft`` of
iteration 3, and reading ``nodes.fetch`` gets the top-level ``fetch``. Nothing is copied per step, so a
10,000-item loop does not build 10,000 contexts of the whole run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.core.plan import Plan
from engine.core.state import RunState, StepKey, StepState
from engine.dsl.expression import evaluate


def step_view(step: StepState) -> dict[str, Any]:
    """``nodes.<id>`` as expressions see it."""
    duration = None
    if step.started_at is not None and step.finished_at is not None:
        duration = round((step.finished_at - step.started_at).total_seconds() * 1000)
    return {
        "output": step.output,
        "status": str(step.status),
        "error": step.error.to_dict() if step.error else None,
        "attempts": step.attempt,
        "started_at": step.started_at.isoformat() if step.started_at else None,
        "finished_at": step.finished_at.isoformat() if step.finished_at else None,
        "duration_ms": duration,
        "cost_cion": step.cost_cion,
    }


class NodesView(Mapping[str, Any]):
    """Read-only ``nodes`` for the step at ``frames``: each id resolves to the execution in scope."""

    def __init__(self, plan: Plan, state: RunState, frames: tuple[tuple[str, int], ...]) -> None:
        self._plan = plan
        self._state = state
        self._frames = frames

    def _key(self, node_id: str) -> StepKey:
        scope = self._plan.scope_of[node_id]
        loop = self._plan.loop_of_scope.get(scope)
        if loop is None:
            return StepKey(node_id)
        for depth, (frame_loop, _) in enumerate(self._frames):
            if frame_loop == loop:
                return StepKey(node_id, self._frames[: depth + 1])
        return StepKey(node_id, ((loop, -1),))  # not in this loop: nothing visible

    def __getitem__(self, node_id: str) -> Any:
        if node_id not in self._plan.nodes:
            raise KeyError(node_id)
        key = self._key(node_id)
        if key not in self._state.steps:
            raise KeyError(node_id)
        return step_view(self._state.steps[key])

    def __contains__(self, node_id: object) -> bool:
        if not isinstance(node_id, str) or node_id not in self._plan.nodes:
            return False
        return self._key(node_id) in self._state.steps

    def __iter__(self) -> Iterator[str]:
        return (n for n in self._plan.nodes if n in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def run_view(state: RunState) -> dict[str, Any]:
    return {
        "id": state.run_id,
        "version_id": state.version_id,
        "status": str(state.status),
        "started_at": state.started_at.isoformat(),
        "trigger": state.trigger,
        "error": state.error.to_dict() if state.error else None,
        "attempt": state.attempt,
    }


def expression_context(plan: Plan, state: RunState, key: StepKey) -> dict[str, Any]:
    """Everything but secrets (the worker adds those at the last moment, and only for the step's `with`)."""
    context: dict[str, Any] = {
        "inputs": state.input if state.input is not None else {},
        "trigger": state.trigger if state.trigger is not None else {},
        "run": run_view(state),
        "nodes": NodesView(plan, state, key.frames),
    }
    loop = key.loop
    if loop is not None:
        index = key.frames[-1][1]
        context["item"] = state.loops[loop].items[index]
        context["index"] = index
    return context


def step_input(
    plan: Plan,
    state: RunState,
    key: StepKey,
    secrets: Mapping[str, str] | None = None,
    context: Mapping[str, Any] | None = None,
) -> Any:
    """The step's ``with``, evaluated as the worker runs it (secrets resolved here, at the last moment).
    ``context``: the step's expression_context, when the caller already built it."""
    node = plan.nodes[key.node]
    scope = dict(context if context is not None else expression_context(plan, state, key))
    scope["secrets"] = dict(secrets or {})
    return evaluate(getattr(node, "with_", {}), scope)
