"""Jules's self-healing, as a failed run's page needs it: a small protocol the composition root implements.

The UI may not import the co-pilot (import-linter): ``api.app`` puts an object with this shape on
``app.state.ui_healer`` (``api.ui_heal``, over ``copilot.healing`` as the API runs it), so the run page asks why a run
failed and what would fix it (:class:`Healing`: the diagnosis, the fix as a diff, its proof by replay, the cost
change), then resumes the run with the fix or as it is, always for one owner. Another owner's run is
:class:`NotFound`; a fix that changed since it was shown is :class:`Changed` (with the new one); any other refusal
is an ``IonfluxError`` whose message is readable as it stands (``heal.no_failed_step``, ``heal.refused``, …).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from fastapi import Request

Outcome = Literal["verified", "dry", "fails"]


class NotFound(LookupError):
    """Raised when the run does not exist for this owner (another owner's answers the same)."""


@dataclass(frozen=True)
class Proof:
    """The replay of the failed step on its recorded input."""

    outcome: Outcome  # verified: executed and succeeded; dry: inputs check out, the outside call not made; fails
    summary: str  # in words ("replayed on the recorded input: succeeded in 1 attempt(s), 0.01 s")


@dataclass(frozen=True)
class Healing:
    run_id: str
    flow_id: str
    step: str  # the failed step's key
    node_type: str
    error_code: str
    error_message: str
    cause: str  # undefined_name, secret_missing, transient, … (copilot.diagnosis)
    summary: str  # one line: what went wrong
    detail: str  # what was seen, where
    by: str  # rules | model:NAME
    fix: str  # what the fix is, in a sentence ("" when none follows from the facts)
    action: str  # what only a person can do first, as a command ("" for none)
    resume_as_is: bool  # resuming on the same version may be enough
    diff: str  # the fix as a unified diff of the flow's YAML ("" when it edits no flow)
    problems: str  # why the fix does not validate ("" when it does)
    proof: Proof | None  # None: not replayed
    cost_change: str  # "" when unknown
    fingerprint: str  # names this fix: applying sends it back, so only the fix shown is applied

    @property
    def can_apply(self) -> bool:
        """A flow edit whose replay executed and succeeded."""
        return bool(self.diff) and self.proof is not None and self.proof.outcome == "verified"

    @property
    def can_resume_as_is(self) -> bool:
        """The fix is a person's action (then resume), or resuming as it is."""
        return bool(self.action) or self.resume_as_is


@dataclass(frozen=True)
class Resumed:
    run_id: str
    version: str | None  # the fixed flow's new version; None: resumed on the same one
    resumed_from: str  # the step the run resumed from
    cause: str = ""  # the applied fix's diagnosis ("" when resumed as it is), for the audit log
    by: str = ""  # rules | model:NAME


class Changed(Exception):
    """Raised when applying finds another fix than the one shown (a model may answer differently): nothing was
    applied; ``healing`` is the fix found now, to review."""

    def __init__(self, healing: Healing) -> None:
        super().__init__("Jules's fix changed since it was shown")
        self.healing = healing


class RunHealer(Protocol):
    def heal(self, run_id: str, *, owner: str) -> Healing:
        """Diagnose the run's failed step, propose a fix and prove it by replaying the step (seconds at most;
        nothing is stored)."""
        ...

    def apply(self, run_id: str, *, owner: str, fingerprint: str = "", as_is: bool = False) -> Resumed:
        """Resume the run from its failed step: with the fix named ``fingerprint``, found and proved again now
        (:class:`Changed` if it is another), or ``as_is`` on the same version."""
        ...


class HealerMissing(RuntimeError):
    """Raised when a run page asks for a healing but the composition root did not set ``app.state.ui_healer``."""


def healer(request: Request) -> RunHealer:
    """The run page's healer, as the composition root gave it (a FastAPI dependency)."""
    found: RunHealer | None = getattr(request.app.state, "ui_healer", None)
    if found is None:
        raise HealerMissing("app.state.ui_healer is not set: api.app.create_app sets it (api.ui_heal)")
    return found
