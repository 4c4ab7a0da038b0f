"""A benchmark-only node type, ``bench.fibo``, registered the way extensions are (``IONFLUX_EXTENSIONS=bench.fibo``).

The step computes ``fibo(n)`` recursively (the Windmill engine benchmark's task body) and reports how long the
body itself took, so the benchmark can subtract the work from the wall time and keep the orchestration overhead.
"""

from __future__ import annotations

import time
from typing import Any

from engine.nodetypes.registry import NodeType, Registry
from engine.steps.call import StepCall
from engine.steps.registry import ExecutorRegistry


def fibo(n: int) -> int:
    return n if n < 2 else fibo(n - 1) + fibo(n - 2)


def run(call: StepCall) -> Any:
    started = time.perf_counter()
    value = fibo(int(call.with_["n"]))
    return {"value": value, "body_s": time.perf_counter() - started}


def register(types: Registry, executors: ExecutorRegistry) -> None:
    types.register(
        NodeType(
            "bench.fibo",
            "bench",
            "fibo(n), recursively (benchmark workload)",
            {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            {"type": "object"},
        )
    )
    executors.register("bench.fibo", run)
