"""Self-healing: diagnose a failed run, propose a fix as a diff, prove it by replaying the failed step on its
recorded input, and, once approved, resume the run from that step on the fixed version (upstream outputs kept).

::

    healing = heal(orchestrator, run_id)             # diagnosis, diff, verification, cost change
    if healing.verified:
        version = apply(orchestrator, healing)       # a new flow version; the run resumes from the failed step

The diagnosis comes from the rules (``copilot.diagnosis``) and, when they find no fix and a model is configured,
from the model (``copilot.model_edits``: the same structured edit operations, validated and repaired like any
chat edit). A fix is FluxGraph edits to the failed node (made in place in the YAML, comments kept), a budget, an
action only a person can take (set a secret: then :func:`apply` with ``as_is``), or "resume as it is" for a failure
that went away. Nothing is applied without a caller's decision; a fix that does not verify is not applied unless
the caller insists (``force``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from copilot.diagnosis import Diagnosis, Fix, diagnose
from copilot.edits import EditError, Proposal, UpdateNode, check, propose
from copilot.node_update import update_node
from copilot.structured import ModelAway, ModelChoice
from engine.dsl.forecast import flow_forecast
from engine.dsl.issue import FlowValidationError
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.runtime import flow_queries
from engine.runtime.failures import FailedStep, Replay, failed_step, replay
from engine.runtime.orchestrator import Orchestrator
from engine.runtime.triggers import Triggers

log = logging.getLogger("ionflux.heal")


class HealError(IonfluxError):
    """Raised when a healing cannot be applied (no verified fix, a stale run, a fix that does not validate)."""

    code = "heal.refused"


@dataclass(frozen=True)
class Healing:
    failed: FailedStep
    diagnosis: Diagnosis
    after: str | None = None  # the fixed flow's YAML (None: no flow edit)
    diff: str = ""
    problems: str = ""  # the fix's validation problems (then it is not proposed)
    verification: Replay | None = None
    cost_before: float | None = None  # C-ION per run, forecast
    cost_after: float | None = None

    @property
    def verified(self) -> bool:
        """The fix was replayed on the recorded input and the step succeeded (a dry replay does not count)."""
        return self.verification is not None and self.verification.executed and self.verification.ok

    @property
    def checked(self) -> bool:
        """Verified, or dry-replayed with every input up to the outside call checking out."""
        return self.verification is not None and self.verification.ok

    @property
    def cost_change(self) -> str:
        if self.cost_before is None or self.cost_after is None:
            return ""
        delta = round(self.cost_after - self.cost_before, 4)
        if delta == 0:
            return f"no change to the forecast ({self.cost_before:g} C-ION per run at most)"
        sign = "+" if delta > 0 else "−"
        return f"{self.cost_before:g} → {self.cost_after:g} C-ION per run at most ({sign}{abs(delta):g})"

    def to_dict(self) -> dict[str, Any]:
        v = self.verification
        return {
            "run_id": self.failed.run_id,
            "step": self.failed.key,
            "error": self.failed.error.to_dict(),
            "diagnosis": self.diagnosis.to_dict(),
            "diff": self.diff,
            "after": self.after,
            "problems": self.problems or None,
            "verification": None
            if v is None
            else {
                "executed": v.executed,
                "ok": v.ok,
                "attempts": v.attempts,
                "seconds": round(v.seconds, 3),
                "error": v.error.to_dict() if v.error else None,
                "summary": v.describe(),
            },
            "verified": self.verified,
            "cost_change": self.cost_change or None,
        }


def heal(
    orchestrator: Orchestrator,
    run_id: str,
    *,
    model: ModelChoice | None = None,
    aliases: tuple[str, ...] = ("default",),
    allow_effects: bool = False,
) -> Healing:
    """Diagnose run ``run_id``'s failed step, propose a fix and verify it by replay (nothing is changed)."""
    failed = failed_step(orchestrator, run_id)
    forecast = _cost(failed.source, orchestrator)
    diagnosis = diagnose(failed, aliases=aliases, sandbox=orchestrator.config.sandbox, forecast_cion=forecast)
    if (diagnosis.fix is None or not diagnosis.fix.edits_flow) and model is not None and not _person(diagnosis):
        diagnosis = _ask_model(failed, diagnosis, orchestrator, model, aliases)
    fix = diagnosis.fix
    if fix is None:
        return Healing(failed, diagnosis)
    if not fix.edits_flow:  # an action for a person, or resume as it is: replay the step as it is
        proof = _replay(orchestrator, failed, failed.source, allow_effects) if fix.resume_as_is else None
        return Healing(failed, diagnosis, verification=proof)
    proposal, problems = _proposal(failed, fix, orchestrator)
    if proposal is None or not proposal.valid:
        return Healing(failed, diagnosis, problems=problems or (proposal.problems if proposal else ""))
    proof = _replay(orchestrator, failed, proposal.after, allow_effects)
    after = _cost(proposal.after, orchestrator)
    return Healing(failed, diagnosis, proposal.after, proposal.text_diff(), "", proof, forecast, after)


def apply(
    orchestrator: Orchestrator,
    healing: Healing,
    *,
    as_is: bool = False,
    force: bool = False,
    triggers: Triggers | None = None,
) -> str | None:
    """Resume the run from its failed step: on a new version with the fix (-> its id), or ``as_is`` on the same
    version (after a person's action, or a transient failure; -> None). Upstream outputs are kept. With
    ``triggers``, a flow whose active version is the failed one gets the fixed version activated, so its next
    scheduled, webhook or event run has the fix too (a webhook keeps its URL)."""
    if as_is:
        orchestrator.rerun(healing.failed.run_id)
        return None
    if healing.after is None:
        raise HealError(
            "there is no fix to apply",
            hint="resume as it is (after the action the diagnosis names), or edit the flow yourself",
        )
    if not healing.verified and not force:
        why = healing.verification.describe() if healing.verification else "it was not replayed"
        raise HealError(f"the fix is not verified: {why}", hint="apply it anyway with force, or edit the flow")
    failed = healing.failed
    _, version = orchestrator.save_flow(healing.after, f"heal of run {failed.run_id}", failed.owner_id)
    orchestrator.rerun(failed.run_id, version)
    if triggers is not None:
        record = flow_queries.get(orchestrator.db, failed.owner_id, failed.flow_id)
        if record is not None and record.active_version == failed.version_id:
            triggers.activate(failed.flow_id, version)
            log.info("flow %s: the fixed version %s is now the active one", failed.flow_id, version)
    log.info("run %s resumed from %s on version %s", healing.failed.run_id, healing.failed.key, version)
    return version


# --- pieces ---------------------------------------------------------------------------------------------------


def _person(diagnosis: Diagnosis) -> bool:
    """Only a person can fix it (a secret, a setting): a model cannot either."""
    return diagnosis.fix is not None and bool(diagnosis.fix.action)


def _proposal(failed: FailedStep, fix: Fix, orchestrator: Orchestrator) -> tuple[Proposal | None, str]:
    registry = orchestrator.registry
    try:
        if all(isinstance(op, UpdateNode) and not op.unset for op in fix.operations):
            after = failed.source
            for op in fix.operations:
                assert isinstance(op, UpdateNode)
                after = update_node(after, op.id, op.set, [], registry)  # in place: the user's comments stay
            return check(failed.source, after, tuple(fix.operations), registry), ""
        return propose(failed.source, fix.operations, registry), ""
    except EditError as e:
        return None, e.message


def _replay(orchestrator: Orchestrator, failed: FailedStep, source: str, allow_effects: bool) -> Replay | None:
    try:
        return replay(orchestrator, failed, source, allow_effects=allow_effects)
    except (IonfluxError, FlowValidationError) as e:
        log.info("the replay of %s could not run: %s", failed.key, e)
        return None


def _cost(source: str, orchestrator: Orchestrator) -> float | None:
    try:
        flow = load_flow(source, "flow.yaml", registry=orchestrator.registry)
    except FlowValidationError:
        return None
    return float(flow_forecast(flow, orchestrator.registry).fixed_cion)


def _ask_model(
    failed: FailedStep, found: Diagnosis, orchestrator: Orchestrator, model: ModelChoice, aliases: tuple[str, ...]
) -> Diagnosis:
    """The model's fix, as edit operations on the flow, grounded in the failure's facts (the rules' diagnosis,
    the error, the node, its recorded input, the logs). Keeps the rules' diagnosis if the model has none."""
    from copilot.model_edits import edit_with_model

    try:
        edited = edit_with_model(
            heal_request(failed, found), failed.source, orchestrator.registry, model, aliases=aliases
        )
    except ModelAway as e:
        log.info("the model could not be reached for a fix: %s", e)
        return found
    if edited.proposal is None or not edited.proposal.valid or not edited.proposal.operations:
        return found
    by = f"model:{model.model}"
    fix = Fix(edited.reply or "the model's fix", tuple(edited.proposal.operations))
    cause = found.cause if found.cause != "unknown" else "model_fix"
    return replace(found, fix=fix, by=by, cause=cause)


def heal_request(failed: FailedStep, found: Diagnosis) -> str:
    """What the model is asked: fix this node so that this step succeeds on this recorded input."""
    lines = [
        f"Run {failed.run_id} failed at step {failed.key} (node {failed.node_id}, type {failed.node_type}).",
        f"Error {failed.error.code}: {failed.error.message}",
        f"Diagnosis so far ({found.cause}): {found.summary}",
    ]
    if found.location.get("line"):
        lines.append(f"The error is at line {found.location['line']} of with.code.")
    if failed.input_preview:
        lines.append(f"The step's recorded input (with, evaluated): {failed.input_preview[:1500]}")
    for level, text in failed.logs[-10:]:
        lines.append(f"log {level}: {text[:300]}")
    lines.append(
        f"Change only node {failed.node_id!r} (update_node) so that this step succeeds on the same input; keep "
        "everything else. Reply with one sentence saying what the fix is."
    )
    return "\n".join(lines)
