"""The run state the machine advances: frozen values, persistent maps (structural sharing keeps updates cheap
for 10,000-item loops), no clock and no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import immutables


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class StepStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"  # may start, but the run is paused
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED)


_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\[(\d+)\]")


@dataclass(frozen=True, slots=True, order=True)
class StepKey:
    """Which execution of a node: its id, inside which loop iterations (``loop[3].inner[0].leaf``)."""

    node: str
    frames: tuple[tuple[str, int], ...] = ()

    def sibling(self, node: str) -> StepKey:
        return StepKey(node, self.frames)

    def iteration(self, index: int) -> tuple[tuple[str, int], ...]:
        """The frames of iteration ``index`` of this (foreach) step."""
        return (*self.frames, (self.node, index))

    @property
    def loop(self) -> StepKey | None:
        """The foreach step whose iteration this step belongs to."""
        if not self.frames:
            return None
        loop_id, _ = self.frames[-1]
        return StepKey(loop_id, self.frames[:-1])

    def __str__(self) -> str:
        return "".join(f"{n}[{i}]." for n, i in self.frames) + self.node

    @classmethod
    def parse(cls, text: str) -> StepKey:
        *frames, node = text.split(".")
        parsed = []
        for frame in frames:
            m = _KEY.fullmatch(frame)
            if m is None:
                raise ValueError(f"{text!r} is not a step key (expected e.g. loop[3].node)")
            parsed.append((m.group(1), int(m.group(2))))
        return cls(node, tuple(parsed))


@dataclass(frozen=True, slots=True)
class StepError:
    """Why a step failed: a stable code, a message, and whether trying again could help.

    ``retry_after`` (seconds) is the service's own "not before" (HTTP ``Retry-After``, a rate limit's reset): a
    retry waits at least that long, whatever the node's backoff says.
    """

    code: str
    message: str
    retryable: bool = False
    retry_after: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message, "retryable": self.retryable}
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data


@dataclass(frozen=True, slots=True)
class StepState:
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    output: Any = None
    error: StepError | None = None
    waiting: str | None = None  # retry | approval | timer | child: what a non-running step waits for
    started_at: datetime | None = None
    finished_at: datetime | None = None
    handled: bool = False  # failed, but on_error continue/route took over
    routed: bool = False  # failed and routed to its on_error handler
    cost_cion: float = 0.0
    run_attempt: int = 1  # the run attempt that last settled this step (re-runs reuse earlier outputs)
    reused: bool = False
    child_run_id: str | None = None
    digest: str = ""  # the node definition this result came from (see Plan.digests)


@dataclass(frozen=True, slots=True)
class LoopState:
    """A running foreach: its items, how many iterations are open, and the outputs gathered so far."""

    items: tuple[Any, ...]
    concurrency: int
    next_index: int = 0
    open_iterations: int = 0
    remaining: immutables.Map[int, int] = field(default_factory=immutables.Map)  # nodes left per iteration
    outputs: immutables.Map[int, Any] = field(default_factory=immutables.Map)


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    """A durable timer the adapter keeps and fires back as ``TimerFired``: retry, delay, timeout, approval."""

    kind: str
    key: StepKey
    attempt: int


@dataclass(frozen=True, slots=True)
class RunState:
    run_id: str
    version_id: str
    status: RunStatus
    input: Any
    trigger: Any
    started_at: datetime
    steps: immutables.Map[StepKey, StepState] = field(default_factory=immutables.Map)
    loops: immutables.Map[StepKey, LoopState] = field(default_factory=immutables.Map)
    phase: str = "main"  # main | on_failure
    settled: int = 0  # top-level nodes of the current phase that reached a terminal status
    paused: bool = False
    held: tuple[StepKey, ...] = ()  # ready while paused
    error: StepError | None = None
    outputs: Any = None
    spent_cion: float = 0.0
    attempt: int = 1
    finished_at: datetime | None = None
    running: int = 0  # steps executing now (approvals excluded)
    approvals: int = 0  # steps waiting for a person

    def step(self, key: StepKey) -> StepState:
        return self.steps.get(key) or StepState()
