"""Loop bookkeeping stays flat per item: 10,000 items cost ~10x 1,000 items, not 100x."""

from __future__ import annotations

import gc
import time

from engine.core.plan import compile_plan
from engine.core.simulate import Simulation
from engine.core.state import RunStatus, StepKey
from engine.dsl.validator import load_data

FLOW = {
    "fluxgraph": 1,
    "id": "big-loop",
    "nodes": [
        {
            "id": "loop",
            "type": "foreach",
            "items": "{{ inputs.items }}",
            "concurrency": 8,
            "do": [{"id": "work", "type": "data.set", "with": {"v": "{{ item }}"}}],
        }
    ],
}


def per_item_seconds(count: int) -> float:
    """This thread's CPU time per item, the collector paused: what the bookkeeping costs, not what other threads
    of the test process (a test's server still winding down) or a collection of a large heap take meanwhile (in a
    full run the wall-clock ratio read 3x twice, and 0.8x alone)."""
    sim = Simulation(compile_plan(load_data(FLOW)))
    gc.collect()
    gc.disable()
    try:
        started = time.thread_time()
        state = sim.start({"items": list(range(count))})
        elapsed = time.thread_time() - started
    finally:
        gc.enable()
    assert state.status is RunStatus.SUCCEEDED
    assert state.steps[StepKey("loop")].output == [{"v": i} for i in range(count)]
    return elapsed / count


def test_foreach_time_per_item_is_flat_from_1000_to_10000_items() -> None:
    per_item_seconds(100)  # warm-up
    small = min(per_item_seconds(1_000) for _ in range(2))
    large = per_item_seconds(10_000)
    assert large / small < 2.5, (small, large)  # quadratic bookkeeping would be ~10x
