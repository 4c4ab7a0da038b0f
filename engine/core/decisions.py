"""What the machine asks the adapters to do. Decisions are commands, not effects: the store records them in the
same transaction as the new state, and the queue/timer/child-run adapters carry them out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.core.state import RunStatus, StepError, StepKey, Timer


@dataclass(frozen=True, slots=True)
class StartStep:
    """Execute one attempt of a step (its inputs are evaluated by the worker, secrets resolved there)."""

    key: StepKey
    attempt: int
    node_type: str


@dataclass(frozen=True, slots=True)
class CancelStep:
    key: StepKey
    attempt: int


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    timer: Timer
    at: datetime


@dataclass(frozen=True, slots=True)
class RequestApproval:
    key: StepKey
    message: str | None
    approvers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StartChildRun:
    key: StepKey
    flow_id: str
    version: str | None
    input: Any
    wait: bool = True


@dataclass(frozen=True, slots=True)
class FinishRun:
    status: RunStatus
    outputs: Any = None
    error: StepError | None = None


Decision = StartStep | CancelStep | ScheduleTimer | RequestApproval | StartChildRun | FinishRun
