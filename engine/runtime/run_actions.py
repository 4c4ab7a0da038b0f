"""Whether an action applies to a run as it stands: the refusals (with their stable codes) a live view shows
before asking the orchestrator, which refuses on its own too (``RunRefusedError``) when a race gets past these.

Codes: ``run.finished`` (cancel or pause a finished run), ``run.paused`` (pause a paused run), ``run.not_paused``
(resume a run that is not paused), ``run.no_pending_approval`` (approve or reject with nothing waiting),
``run.not_rerunnable`` (re-run a run that neither failed nor was cancelled). The API's routes give the same codes.
"""

from __future__ import annotations

from typing import Literal

from engine.core.state import RunState, RunStatus
from engine.errors import IonfluxError

Action = Literal["cancel", "pause", "resume", "approve", "reject", "rerun"]
ACTIONS: tuple[Action, ...] = ("cancel", "pause", "resume", "approve", "reject", "rerun")


class ActionRefusedError(IonfluxError):
    """Raised when an action does not apply to the run as it stands (the code says why)."""

    code = "run.refused"


def check(state: RunState, action: Action) -> None:
    """Raise :class:`ActionRefusedError` when ``action`` does not apply to the run now."""
    run = state.run_id
    if action in ("cancel", "pause") and state.status.finished:
        what = "cancelled" if action == "cancel" else "paused"
        raise ActionRefusedError(
            f"run {run} has finished ({state.status}): it cannot be {what}",
            hint="re-run it, or start a new run",
            code="run.finished",
        )
    if action == "pause" and state.paused:
        raise ActionRefusedError(f"run {run} is paused already", hint="resume it", code="run.paused")
    if action == "resume" and (not state.paused or state.status.finished):
        raise ActionRefusedError(f"run {run} is {state.status}, not paused", code="run.not_paused")
    if action in ("approve", "reject") and state.approvals == 0:
        raise ActionRefusedError(
            f"run {run} is {state.status}: no approval waits for a decision",
            hint="the run's steps show what it waits for",
            code="run.no_pending_approval",
        )
    if action == "rerun" and state.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise ActionRefusedError(
            f"run {run} is {state.status}: only failed or cancelled runs re-run",
            hint="cancel it first" if not state.status.finished else "start a new run instead",
            code="run.not_rerunnable",
        )


def allowed(state: RunState) -> frozenset[Action]:
    """The actions that apply to the run now (the buttons a page offers)."""
    out = set()
    for action in ACTIONS:
        try:
            check(state, action)
        except ActionRefusedError:
            continue
        out.add(action)
    return frozenset(out)
