"""What happens to a run, as the machine hears it. Every event carries ``at``, the time the adapter observed it:
the machine never reads a clock, so replaying the same events gives the same decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.core.state import StepError, StepKey, Timer


@dataclass(frozen=True, slots=True)
class RunStarted:
    at: datetime
    run_id: str
    input: Any = None
    trigger: Any = None


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    at: datetime
    key: StepKey
    attempt: int
    output: Any = None
    cost_cion: float = 0.0


@dataclass(frozen=True, slots=True)
class StepFailed:
    at: datetime
    key: StepKey
    attempt: int
    error: StepError
    cost_cion: float = 0.0


@dataclass(frozen=True, slots=True)
class TimerFired:
    at: datetime
    timer: Timer


@dataclass(frozen=True, slots=True)
class ApprovalDecided:
    at: datetime
    key: StepKey
    approved: bool
    by: str | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class ChildRunStarted:
    at: datetime
    key: StepKey
    child_run_id: str


@dataclass(frozen=True, slots=True)
class ChildRunFinished:
    at: datetime
    key: StepKey
    child_run_id: str
    status: str
    outputs: Any = None
    error: StepError | None = None


@dataclass(frozen=True, slots=True)
class CancelRequested:
    at: datetime
    by: str | None = None


@dataclass(frozen=True, slots=True)
class PauseRequested:
    at: datetime


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    at: datetime


@dataclass(frozen=True, slots=True)
class RerunRequested:
    """Re-run a failed (or cancelled) run from its failed steps, keeping every output that still holds; with
    ``from_node``, re-run any finished run (a succeeded one too) from that node: it and everything downstream of
    it run again (a node inside a foreach re-runs its whole loop), everything else keeps its output.

    The machine is called with the plan of the version to re-run on (the same, or a newer one); a kept output
    is reused only if its node is unchanged in that version and everything it depends on was reused too.
    """

    at: datetime
    from_node: str | None = None


Event = (
    RunStarted
    | StepSucceeded
    | StepFailed
    | TimerFired
    | ApprovalDecided
    | ChildRunStarted
    | ChildRunFinished
    | CancelRequested
    | PauseRequested
    | ResumeRequested
    | RerunRequested
)
