"""Determinism: a run's recorded events replayed through the core reproduce the same decisions and state.
Random flows and random failures (hypothesis) must always finish, with every node settled."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core import events as ev
from engine.core.machine import advance
from engine.core.plan import Plan, compile_plan
from engine.core.simulate import SimulatedStep, Simulation
from engine.core.state import RunState, StepError, StepKey
from engine.dsl.validator import load_data, load_flow
from tests.conftest import FLOWS


def replay(plan: Plan, log: list[ev.Event]) -> tuple[RunState | None, list[object]]:
    state: RunState | None = None
    decisions: list[object] = []
    for event in log:
        transition = advance(plan, state, event)
        state = transition.state
        decisions.extend(transition.decisions)
    return state, decisions


def test_replaying_the_demo_run_reproduces_its_decisions() -> None:
    plan = compile_plan(load_flow((FLOWS / "demo-orders-digest.yaml").read_bytes()))
    sim = Simulation(plan, lambda step: {"count": 3, "text": "ok"}, secrets={
        "shop_token": "t", "discord_sales_webhook": "https://discord.com/api/webhooks/1/x",
    })  # fmt: skip
    sim.start({"days": 1, "busy_day_orders": 2, "owner_email": "ana@shop.pt"})
    state, decisions = replay(plan, sim.log)
    assert decisions == sim.decisions and state == sim.state


@st.composite
def random_runs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, int], dict[str, bool]]:
    count = draw(st.integers(1, 10))
    nodes: list[dict[str, Any]] = []
    for k in range(count):
        node: dict[str, Any] = {"id": f"n{k}", "type": "data.set", "with": {"k": k}}
        if k:
            node["needs"] = sorted(set(draw(st.lists(st.sampled_from([f"n{j}" for j in range(k)]), max_size=3))))
        if draw(st.booleans()):
            node["retry"] = {"max_attempts": draw(st.integers(1, 4)), "jitter": draw(st.booleans())}
        choice = draw(st.sampled_from(["fail", "continue", "fail", "handler"]))
        if choice == "continue":
            node["on_error"] = "continue"
        if draw(st.integers(0, 4)) == 0:
            node["if"] = draw(st.sampled_from([True, False, "{{ inputs.flag }}"]))
        nodes.append(node)
    if draw(st.booleans()) and count > 1:
        body = [{"id": "inner", "type": "data.set", "with": {"v": "{{ item }}"}}]
        nodes.append(
            {
                "id": "loop",
                "type": "foreach",
                "needs": ["n0"],
                "items": list(range(draw(st.integers(0, 5)))),
                "concurrency": draw(st.integers(1, 3)),
                "do": body,
            }
        )
    flow = {
        "fluxgraph": 1, "id": "random", "nodes": nodes,
        "inputs": {"type": "object", "properties": {"flag": {"type": "boolean"}}},
        "on_failure": [{"id": "alert", "type": "data.set", "with": {"e": "{{ run.error.code }}"}}],
    }  # fmt: skip
    failures = {n["id"]: draw(st.integers(0, 3)) for n in nodes if draw(st.booleans())}
    retryable = {n: draw(st.booleans()) for n in failures}
    return flow, failures, retryable


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(random_runs(), st.booleans())
def test_random_runs_always_finish_settled_and_replay_identically(
    case: tuple[dict[str, Any], dict[str, int], dict[str, bool]], flag: bool
) -> None:
    flow_data, failures, retryable = case
    plan = compile_plan(load_data(flow_data))

    def exe(step: SimulatedStep) -> Any:
        node = step.key.node if not step.key.frames else "inner"
        if step.attempt <= failures.get(node, 0):
            return StepError("test.fail", f"{step.key} attempt {step.attempt}", retryable.get(node, False))
        return step.with_

    sim = Simulation(plan, exe)
    state = sim.start({"flag": flag})
    # Then the run finished, every top-level node settled, and a replay gives the same decisions and state
    assert state.status.finished, state.status
    for node_id in plan.scopes["main"].node_ids:
        assert state.step(StepKey(node_id)).status.terminal, node_id
    replayed, decisions = replay(plan, sim.log)
    assert decisions == sim.decisions and replayed == state
