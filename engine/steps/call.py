"""What an executor receives and how it fails."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.core.state import StepError, StepKey
from engine.errors import IonfluxError


class StepFailure(IonfluxError):
    """Raised by an executor when the step fails; ``retryable`` says whether another attempt could succeed."""

    code = "step.failed"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        hint: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.retryable = retryable
        self.retry_after = retry_after  # seconds the service asked us to wait (Retry-After)

    def to_step_error(self, key: StepKey) -> StepError:
        return StepError(self.code, f"{key}: {self.message}", self.retryable, self.retry_after)


@dataclass(frozen=True, slots=True)
class StepCall:
    """One attempt of one step: its resolved ``with`` and the expression context it ran in.

    ``context`` is what expressions see (inputs, trigger, run, nodes, item/index), without secrets: executors
    that evaluate per-item expressions (``data.filter``'s ``where``) use it. ``log`` collects the step's log lines.
    ``usage`` is what a metered executor measured (an LLM step: model, tokens, latency, cost); its ``cost_cion``,
    when set, is the attempt's real charge instead of the node type's forecast. ``emit`` sends a live,
    not-recorded event about this attempt (an LLM's tokens as they stream). ``secrets`` are the values of the
    flow's secrets: an executor that hands text to a third party that must not see them (an LLM) blanks them.
    """

    key: StepKey
    attempt: int
    node_type: str
    with_: Mapping[str, Any]
    context: Mapping[str, Any] = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)  # (level, message)
    run_id: str = ""
    net: tuple[str, ...] = ()  # the node's permissions.net: the hosts it may reach
    usage: dict[str, Any] = field(default_factory=dict)
    emit: Callable[[str, Mapping[str, Any]], None] = field(default=lambda kind, data: None)
    secrets: tuple[str, ...] = ()
    limits: Mapping[str, Any] = field(default_factory=dict)  # sandbox limits the node asks for (fuel, memory_mb, …)


Executor = Callable[[StepCall], Any]
