"""Run input: defaults filled from the `inputs` schema, invalid input refused with every problem named."""

from __future__ import annotations

import pytest

from engine.dsl.inputs import RunInputError, run_input
from engine.dsl.model import Flow
from engine.dsl.validator import load_flow
from tests.conftest import FLOWS

FLOW = load_flow(
    """\
fluxgraph: 1
id: digest
inputs:
  type: object
  properties:
    email: {type: string}
    days: {type: integer, minimum: 1, default: 7}
    filters:
      type: object
      properties: {status: {type: string, default: paid}}
      default: {}
  required: [email]
  additionalProperties: false
nodes: [{id: a, type: log, with: {message: hi}}]
"""
)


def test_defaults_fill_missing_values_recursively() -> None:
    assert run_input(FLOW, {"email": "a@b.c"}) == {"email": "a@b.c", "days": 7, "filters": {"status": "paid"}}
    assert run_input(FLOW, {"email": "a@b.c", "days": 2})["days"] == 2


def test_invalid_input_is_refused_with_every_problem_named() -> None:
    with pytest.raises(RunInputError) as e:
        run_input(FLOW, {"days": 0, "extra": True})
    paths = [path for path, _ in e.value.problems]
    assert sorted(paths) == ["inputs", "inputs", "inputs.days"]
    assert e.value.code == "run.input_invalid" and "'email' is a required property" in e.value.message
    with pytest.raises(RunInputError, match="must be a mapping"):
        run_input(FLOW, [1, 2])


@pytest.mark.parametrize(
    "flow", [FLOW, load_flow("fluxgraph: 1\nid: x\nnodes: [{id: a, type: log, with: {message: hi}}]\n")]
)
def test_nan_and_infinities_are_refused_where_they_are_with_or_without_a_schema(flow: Flow) -> None:
    """Python's JSON parser reads NaN, Infinity and 1e999; a run's input is stored as JSON, which has none."""
    with pytest.raises(RunInputError) as e:
        run_input(flow, {"email": "a@b.c", "days": float("inf"), "n": [1, float("nan")]})
    assert [path for path, _ in e.value.problems] == ["inputs.days", "inputs.n[1]"]
    assert "not JSON" in e.value.message


def test_a_flow_without_inputs_takes_any_mapping_and_the_demo_fills_its_defaults() -> None:
    no_schema = load_flow("fluxgraph: 1\nid: x\nnodes: [{id: a, type: log, with: {message: hi}}]\n")
    assert run_input(no_schema, None) == {}
    demo = load_flow((FLOWS / "demo-orders-digest.yaml").read_bytes())
    assert run_input(demo, {}) == {"days": 1, "busy_day_orders": 20, "owner_email": "ana@shop.pt"}
