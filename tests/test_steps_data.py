"""The data executors, run by the core through the in-memory simulation."""

from __future__ import annotations

from typing import Any

from engine.core.simulate import Simulation
from engine.core.state import RunStatus, StepKey
from engine.steps.call import StepCall
from engine.steps.dispatch import run_step, simulated
from engine.steps.registry import builtin_executors
from tests.core_helpers import plan_of

HEAD = "fluxgraph: 1\nid: t\n"


def run_flow(text: str, input: Any = None) -> Any:
    sim = Simulation(plan_of(text), simulated(builtin_executors()))
    return sim.start(input)


def test_filter_extract_template_and_set_work_together() -> None:
    state = run_flow(
        HEAD
        + """
inputs: {type: object, properties: {min: {type: number}}}
nodes:
  - id: src
    type: data.set
    with: {orders: [{id: 1, total: 50}, {id: 2, total: 150}, {id: 3, total: 300}]}
  - id: big
    type: data.filter
    needs: [src]
    with: {items: "{{ nodes.src.output.orders }}", where: "item.total > inputs.min", limit: 5}
  - {id: ids, type: json.extract, needs: [big], with: {data: "{{ nodes.big.output }}", path: "[].id"}}
  - id: first
    type: json.extract
    needs: [src]
    with: {data: "{{ nodes.src.output }}", path: "orders[1].total", syntax: path}
  - id: msg
    type: text.template
    needs: [ids, first]
    with: {template: "{{ nodes.ids.output | length }} big orders; second total {{ nodes.first.output }}"}
  - {id: note, type: log, needs: [msg], with: {message: "{{ nodes.msg.output.text }}"}}
outputs: {ids: "{{ nodes.ids.output }}", text: "{{ nodes.msg.output.text }}"}
""",
        {"min": 100},
    )
    assert state.status is RunStatus.SUCCEEDED
    assert state.outputs == {"ids": [2, 3], "text": "2 big orders; second total 150"}


def test_failures_name_the_step_and_the_cause() -> None:
    state = run_flow(HEAD + "nodes:\n  - {id: x, type: json.extract, with: {data: {a: 1}, path: b.c, syntax: path}}\n")
    error = state.steps[StepKey("x")].error
    assert state.status is RunStatus.FAILED and error is not None
    assert error.code == "step.path_not_found" and error.message.startswith("x: path 'b.c'")


def test_a_type_without_an_executor_fails_clearly_never_silently() -> None:
    state = run_flow(HEAD + "nodes:\n  - {id: call, type: code.python, with: {code: 'def main(input): return 1'}}\n")
    error = state.steps[StepKey("call")].error
    assert error is not None and error.code == "step.no_executor" and "code.python" in error.message


def test_log_lines_are_collected_and_crashes_become_retryable_step_errors() -> None:
    call = StepCall(StepKey("l"), 1, "log", {"message": "hello", "level": "warning"})
    assert run_step(builtin_executors(), call) is None and call.log == [("warning", "hello")]
    broken = StepCall(StepKey("f"), 1, "data.filter", {"items": [1], "where": "item.x.y"})
    error = run_step(builtin_executors(), broken)
    assert error.code == "expr.undefined" and error.message.startswith("f: with.where on item 0")
