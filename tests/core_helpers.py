"""Helpers for the core tests: compile a YAML flow and run it through the in-memory simulation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.core.plan import Plan, compile_plan
from engine.core.simulate import SimulatedStep, Simulation
from engine.core.state import RunState, StepError, StepStatus
from engine.dsl.validator import load_flow


def plan_of(yaml_text: str) -> Plan:
    return compile_plan(load_flow(yaml_text))


def executor(
    results: Mapping[str, Any] | None = None,
    fail: Mapping[str, StepError] | None = None,
    fail_times: Mapping[str, int] | None = None,
) -> Callable[[SimulatedStep], Any]:
    """Steps return ``results[node]`` (or their evaluated ``with``); ``fail`` nodes fail (the first
    ``fail_times[node]`` attempts only, when given)."""
    results, fail, fail_times = results or {}, fail or {}, fail_times or {}

    def run(step: SimulatedStep) -> Any:
        node = step.key.node
        if node in fail and step.attempt <= fail_times.get(node, 10**9):
            return fail[node]
        value = results.get(node, step.with_)
        return value(step.with_) if callable(value) else value

    return run


def statuses(state: RunState) -> dict[str, str]:
    return {str(k): str(s.status) for k, s in sorted(state.steps.items())}


def run(plan: Plan, input: Any = None, **kwargs: Any) -> tuple[Simulation, RunState]:
    sim = Simulation(plan, **kwargs)
    return sim, sim.start(input)


BOOM = StepError("http.status", "HTTP 500 from api.example.com", retryable=True)
FATAL = StepError("http.status", "HTTP 401 from api.example.com", retryable=False)

__all__ = ["BOOM", "FATAL", "StepStatus", "executor", "plan_of", "run", "statuses"]
