"""Self-healing as the server runs it, for the REST API (``api.v1.heal``) and the run page (``api.ui_heal``) alike:
Jules's model and the model aliases from the settings (as ``ionflux heal`` picks them), the healing of a failed run
(``copilot.healing.heal``: diagnosis, fix, proof by replay, cost change), and applying the fix a person reviewed.

Applying heals again: the fix is found again and its proof re-run on the recorded input, so what is applied is what
was just verified, never a proof from minutes ago (and the run's state is read afresh). A reviewed fix is named by
its :func:`fingerprint` (the run's version, the failed step, the fixed YAML); an apply that carries one is refused
with ``heal.changed`` when the fix found now is another one (a model may answer differently the second time), so no
one applies a diff they did not see. Resuming as it is (``as_is``) changes nothing and replays nothing: the run
resumes from its failed step on the same version, after the action the diagnosis names (a secret set) or for a
failure that went away.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from api.jules import model_choice
from api.settings import Settings
from copilot.diagnosis import diagnose
from copilot.healing import Healing, apply, heal
from engine.errors import IonfluxError
from engine.runtime import run_actions
from engine.runtime.failures import failed_step
from engine.runtime.orchestrator import Orchestrator
from engine.runtime.triggers import Triggers


class HealChangedError(IonfluxError):
    """Raised when the fix found at apply time is not the one that was reviewed; ``healing`` is the new one."""

    code = "heal.changed"

    def __init__(self, healing: Healing) -> None:
        super().__init__(
            f"the fix for run {healing.failed.run_id} is not the one you reviewed: Jules now proposes another",
            hint="review the new fix (POST …/heal again), then apply it with its fingerprint",
        )
        self.healing = healing


@dataclass(frozen=True)
class Applied:
    run_id: str
    version: str | None  # the fixed flow's new version; None when the run resumed as it was
    resumed_from: str  # the failed step's key
    healing: Healing | None  # what was applied (None: resumed as it is)


def healing_of(orchestrator: Orchestrator, settings: Settings, run_id: str, *, allow_effects: bool = False) -> Healing:
    """Run ``run_id``'s diagnosis, fix and proof with the configured model (none: the rules alone). Raises
    ``heal.no_failed_step`` when the run has no failed step. Executes the failed step again: seconds, at most."""
    aliases = tuple(settings.model_routes()) or ("default",)
    return heal(orchestrator, run_id, model=model_choice(settings), aliases=aliases, allow_effects=allow_effects)


def fingerprint(healing: Healing) -> str:
    """A short name of the fix a healing proposes (the same fix of the same failure: the same name)."""
    seen = "\n".join((healing.failed.version_id, healing.failed.key, healing.after or ""))
    return hashlib.sha256(seen.encode()).hexdigest()[:16]


def apply_reviewed(
    orchestrator: Orchestrator,
    settings: Settings,
    run_id: str,
    *,
    as_is: bool = False,
    force: bool = False,
    reviewed: str | None = None,
    allow_effects: bool = False,
    triggers: Triggers | None = None,
) -> Applied:
    """Resume run ``run_id`` from its failed step: on a new version with the fix found and proved now (refused when
    it is not ``reviewed``, or not verified without ``force``), or ``as_is`` on the same version. ``triggers``: the
    fixed version becomes the active one if the failed one was (copilot.healing.apply)."""
    if as_is:
        failed = failed_step(orchestrator, run_id)
        run_actions.check(orchestrator.state(run_id), "rerun")
        apply(orchestrator, Healing(failed, diagnose(failed)), as_is=True)
        return Applied(run_id, None, failed.key, None)
    healing = healing_of(orchestrator, settings, run_id, allow_effects=allow_effects)
    if reviewed and reviewed != fingerprint(healing):
        raise HealChangedError(healing)
    # checked before the fix is stored: a run still going on must not get a new version it cannot resume on
    run_actions.check(orchestrator.state(run_id), "rerun")
    version = apply(orchestrator, healing, force=force, triggers=triggers)
    return Applied(run_id, version, healing.failed.key, healing)
