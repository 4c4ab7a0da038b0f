"""An in-memory driver for the machine: executes steps with plain functions and fires timers on a simulated
clock. It is the core's stub adapter: tests drive every semantic through it, replay tests re-run its event log,
and benchmarks use it to measure the machine alone. Nothing here touches a real clock or I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core import events as ev
from engine.core.context import expression_context, step_input
from engine.core.decisions import (
    CancelStep,
    Decision,
    FinishRun,
    RequestApproval,
    ScheduleTimer,
    StartChildRun,
    StartStep,
)
from engine.core.machine import advance
from engine.core.plan import Plan
from engine.core.state import RunState, StepError, StepKey, Timer
from engine.dsl.expression import ExpressionError


@dataclass(frozen=True, slots=True)
class SimulatedStep:
    """What a simulated executor gets: the step, its attempt, its evaluated ``with`` and expression context."""

    key: StepKey
    attempt: int
    node_type: str
    with_: Any
    context: Mapping[str, Any]


#: An executor returns the step's output, or a StepError to fail the attempt.
Executor = Callable[[SimulatedStep], Any]
EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STEP_TIME = timedelta(milliseconds=10)


def default_executor(step: SimulatedStep) -> Any:
    """Return the evaluated ``with`` (what ``data.set`` does; enough for flows that only move data around)."""
    return step.with_


@dataclass
class Simulation:
    plan: Plan
    executor: Executor = default_executor
    approvals: Mapping[str, bool] = field(default_factory=dict)  # node id -> decision given at once
    children: Callable[[StartChildRun], tuple[str, Any]] | None = None  # -> (status, outputs)
    secrets: Mapping[str, str] = field(default_factory=dict)
    clock: datetime = EPOCH
    state: RunState | None = None
    log: list[ev.Event] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    max_events: int = 1_000_000
    _timers: list[tuple[datetime, int]] = field(default_factory=list)
    _pending: dict[int, Timer] = field(default_factory=dict)
    _seq: int = 0
    _work: list[Decision] = field(default_factory=list)

    def feed(self, event: ev.Event) -> None:
        self.log.append(event)
        transition = advance(self.plan, self.state, event)
        self.state = transition.state
        self.decisions.extend(transition.decisions)
        self._work.extend(transition.decisions)

    def start(self, input: Any = None, trigger: Any = None, run_id: str = "run-1") -> RunState:
        self.feed(ev.RunStarted(self.clock, run_id, input, trigger))
        return self.drain()

    def drain(self) -> RunState:
        """Carry out decisions and fire timers until nothing is left to do (or only a person can act)."""
        for _ in range(self.max_events):
            if self._work:
                self._carry_out(self._work.pop(0))
            elif self._timers:
                at, seq = heapq.heappop(self._timers)
                timer = self._pending.pop(seq)
                self.clock = max(self.clock, at)
                self.feed(ev.TimerFired(self.clock, timer))
            else:
                break
        assert self.state is not None
        return self.state

    def _carry_out(self, decision: Decision) -> None:
        assert self.state is not None
        if isinstance(decision, StartStep):
            self.clock += STEP_TIME
            try:
                with_ = step_input(self.plan, self.state, decision.key, self.secrets)
                context = expression_context(self.plan, self.state, decision.key)
                step = SimulatedStep(decision.key, decision.attempt, decision.node_type, with_, context)
                result = self.executor(step)
            except ExpressionError as e:
                result = StepError(e.code, f"{decision.key}: {e.message}")
            if isinstance(result, StepError):
                self.feed(ev.StepFailed(self.clock, decision.key, decision.attempt, result))
            else:
                self.feed(ev.StepSucceeded(self.clock, decision.key, decision.attempt, result))
        elif isinstance(decision, ScheduleTimer):
            self._seq += 1
            self._pending[self._seq] = decision.timer
            heapq.heappush(self._timers, (decision.at, self._seq))
        elif isinstance(decision, RequestApproval) and decision.key.node in self.approvals:
            self.feed(ev.ApprovalDecided(self.clock, decision.key, self.approvals[decision.key.node], "tester"))
        elif isinstance(decision, StartChildRun):
            child_id = f"child-{decision.key}"
            self.feed(ev.ChildRunStarted(self.clock, decision.key, child_id))
            if decision.wait and self.children is not None:
                status, outputs = self.children(decision)
                self.feed(ev.ChildRunFinished(self.clock, decision.key, child_id, status, outputs))
        elif isinstance(decision, CancelStep | FinishRun | RequestApproval):
            pass  # recorded in self.decisions; nothing to carry out in memory
