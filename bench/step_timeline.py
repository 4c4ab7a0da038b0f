"""Where a step's orchestration overhead goes: one chain workload, each phase of each step timed.

    uv run python -m bench.step_timeline --mode embedded --steps 10 --n 33 --runs 3

The phases (milliseconds, median over the steps of every run after a warm-up run):

- ``start``: ``start_run`` (the run and its first step recorded, the doorbell rung);
- ``hop``: from ``start_run`` returning to a worker thread picking up the doorbell;
- ``claim``: the first step claimed (a transaction);
- ``prepare``: the executor's own time around the step's body (inputs resolved, the call built, output checked);
- ``record``: the step's result recorded and the next step claimed by the same worker (one transaction);
- ``wake``: from the last record to the waiter's return.

It times by wrapping the runtime's methods in this process, so it measures the same code the benchmark runs; the
wrappers cost a few microseconds per phase. ``bench.orchestration`` reports the overhead; this says where it is.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import engine.runtime.runtime as runtime_module
from bench.orchestration import chain_flow, fibo_module, mode_config
from engine.runtime.runtime import Runtime

PHASES = ("start", "hop", "claim", "prepare", "record", "wake")


class Timeline:
    """Timestamps of the current run's phases, appended from whichever thread runs them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.marks: list[tuple[str, float]] = []

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        with self.lock:
            self.marks.append((name, now))

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.mark(f"{name}>")
            try:
                return fn(*args, **kwargs)
            finally:
                self.mark(f"{name}<")

        return wrapper

    def phases(self, bodies: list[float]) -> dict[str, list[float]]:
        """Durations in ms per phase for one run (``bodies``: each step's own body seconds, in order)."""
        at: dict[str, list[float]] = {}
        for name, t in self.marks:
            at.setdefault(name, []).append(t)
        out: dict[str, list[float]] = {p: [] for p in PHASES}
        out["start"].append((at["start<"][0] - at["start>"][0]) * 1000)
        out["hop"].append((at["handle>"][0] - at["start<"][0]) * 1000)
        out["claim"].append((at["claim<"][0] - at["claim>"][0]) * 1000)
        for began, ended, body in zip(at["execute>"], at["execute<"], bodies, strict=True):
            out["prepare"].append(((ended - began) - body) * 1000)
        for began, ended in zip(at["complete>"], at["complete<"], strict=True):
            out["record"].append((ended - began) * 1000)
        out["wake"].append((at["wait<"][0] - at["complete<"][-1]) * 1000)
        return out


def instrument(runtime: Runtime, timeline: Timeline) -> None:
    orchestrator = runtime.orchestrator
    orchestrator.start_run = timeline.timed("start", orchestrator.start_run)  # type: ignore[method-assign]
    orchestrator.claim = timeline.timed("claim", orchestrator.claim)  # type: ignore[method-assign]
    orchestrator.complete = timeline.timed("complete", orchestrator.complete)  # type: ignore[method-assign]
    runtime_module.execute = timeline.timed("execute", runtime_module.execute)  # type: ignore[attr-defined]
    # the doorbell's actor holds the bound method it was made with: give it the timed one
    runtime.handle = timeline.timed("handle", runtime.handle)  # type: ignore[method-assign]
    runtime.doorbell.actor.fn = runtime.handle


def one_run(runtime: Runtime, version: str, timeline: Timeline) -> dict[str, list[float]]:
    timeline.marks.clear()
    run_id = runtime.orchestrator.start_run(version)
    runtime.wait(run_id, 600)
    timeline.mark("wait<")
    state = runtime.orchestrator.state(run_id)
    steps = sorted(state.steps.items(), key=lambda item: int(str(item[0])[1:]))  # f0, f1, … f9, f10
    bodies = [float(step.output["body_s"]) for _, step in steps]
    return timeline.phases(bodies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("embedded", "postgres+redis"), default="embedded")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--n", type=int, default=33, help="fibo(n) per step")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    timeline = Timeline()
    with (
        tempfile.TemporaryDirectory() as tmp,
        mode_config(args.mode, Path(tmp)) as cfg,
        Runtime(cfg, extension_modules=("bench.fibo",)) as runtime,
    ):
        runtime.modules.register(fibo_module(), {"name": "bench-fibo", "version": "1.0.0"}, datetime.now(UTC))
        runtime.start()
        instrument(runtime, timeline)
        _, version = runtime.orchestrator.save_flow(chain_flow(args.steps, args.n), "timeline.yaml")
        one_run(runtime, version, timeline)  # warm-up
        merged: dict[str, list[float]] = {p: [] for p in PHASES}
        for _ in range(args.runs):
            for phase, values in one_run(runtime, version, timeline).items():
                merged[phase].extend(values)
    print(f"{args.mode}, {args.runs} runs of {args.steps} x fibo({args.n}): ms per phase (median / max)")
    for phase in PHASES:
        values = merged[phase]
        print(f"  {phase:>8}: {statistics.median(values):7.3f} / {max(values):7.3f}  (n={len(values)})")
    once = sum(statistics.median(merged[p]) for p in ("start", "hop", "claim", "wake"))
    each = statistics.median(merged["prepare"]) + statistics.median(merged["record"])
    print(f"  per step: {once / args.steps + each:.3f} ms ({once:.3f} once per run, {each:.3f} every step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
