"""Self-healing over HTTP (``/api/v1/runs/{id}/heal``): why a failed run failed, Jules's fix as a diff, its proof by a
replay of the failed step on its recorded input, the cost change; then, once a person approves, the fixed version
stored and the run resumed from the failed step (the steps that succeeded keep their outputs and are not paid for
again).

- ``POST /runs/{id}/heal`` answers the healing (:class:`HealingOut`); nothing is stored. It executes the failed step
  again, alone (seconds at most): a step with outside effects (a POST, an email) only checks its inputs (a dry
  replay) unless ``allow_effects``.
- ``POST /runs/{id}/heal/apply`` heals again and applies: what is applied is what was just verified
  (``api.healing``); with the ``fingerprint`` of the fix that was reviewed, a fix that changed meanwhile is refused
  (``heal.changed``). ``as_is`` resumes on the same version (after a person's action, or for a failure that went
  away); ``force`` applies a fix that did not verify.

Owner-scoped like the runs (another owner's run is 404), write scope (a step is executed), rate-limited like the
other co-pilot calls (``IONFLUX_COPILOT_RATE_PER_MINUTE``). A run with no failed step is 409 ``heal.no_failed_step``;
a fix that cannot be applied (none, not verified) is 409 ``heal.refused``. FastAPI runs these sync routes in its
threadpool, so a replay never holds up the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.healing import apply_reviewed, fingerprint, healing_of
from api.v1.copilot_tools import LimitedWriter, SettingsDep, errors
from api.v1.deps import AccountsDep, RequestBody, RuntimeDep
from api.v1.runs import RunId, owned
from copilot.healing import Healing

router = APIRouter(tags=["runs"])


# --- shapes ---------------------------------------------------------------------------------------------------


class HealIn(RequestBody):
    allow_effects: bool = Field(
        False, description="replay a step with outside effects (a POST, an email) for real; default: a dry replay"
    )


class StepErrorOut(BaseModel):
    code: str = Field(description="a stable error code (docs/errors.md)")
    message: str
    retryable: bool = Field(description="whether trying again could help")
    retry_after: float | None = Field(None, description="seconds the other side asked to wait")


class FixOut(BaseModel):
    description: str = Field(description="what the fix is, in a sentence")
    operations: list[dict[str, Any]] = Field(description="the FluxGraph edits (copilot edit operations); [] for none")
    action: str | None = Field(description="what only a person can do first (e.g. `ionflux secrets set shop_token`)")
    resume_as_is: bool = Field(description="resuming on the same version may be enough (a failure that went away)")


class DiagnosisOut(BaseModel):
    cause: str = Field(
        description="credentials, secret_missing, url_not_found, transient, host_not_allowed, path_not_found, "
        "undefined_name, schema_mismatch, sandbox_limit, budget, code_error, model_unknown, not_configured, "
        "model_fix or unknown"
    )
    summary: str = Field(description="one line: what went wrong")
    detail: str = Field(description="what was seen, where")
    by: str = Field(description="`rules`, or `model:<name>` when the configured model found the fix")
    location: dict[str, Any] = Field(description="node, key, and where known the field and the line of code")
    fix: FixOut | None = Field(description="null: no fix follows from the facts (edit the flow yourself)")


class VerificationOut(BaseModel):
    executed: bool = Field(description="false: a dry replay (inputs checked, the outside call not made)")
    ok: bool
    attempts: int
    seconds: float
    error: StepErrorOut | None = Field(description="why the replay still fails")
    summary: str = Field(description="the proof in words")


class HealingOut(BaseModel):
    run_id: str
    step: str = Field(description="the failed step's key: `node`, or `loop[2].node` in a loop")
    error: StepErrorOut = Field(description="the failed step's error")
    diagnosis: DiagnosisOut
    diff: str = Field(description="unified diff of the flow's YAML ('' when the fix edits no flow)")
    after: str | None = Field(description="the fixed flow's YAML (null when the fix edits no flow)")
    problems: str | None = Field(description="why the fix does not validate (then it is not proposed)")
    verification: VerificationOut | None = Field(description="the replay of the failed step (null: not replayed)")
    verified: bool = Field(description="the replay executed the step with the fix and it succeeded")
    cost_change: str | None = Field(description="the forecast per run before and after the fix, in words")
    fingerprint: str = Field(description="names this fix: send it to `heal/apply` to apply exactly this one")


class ApplyIn(RequestBody):
    as_is: bool = Field(False, description="resume on the same version, changing nothing (no replay)")
    force: bool = Field(False, description="apply a fix that did not verify")
    fingerprint: str | None = Field(
        None, max_length=64, description="the reviewed fix's fingerprint: refused (409) if the fix found now differs"
    )
    allow_effects: bool = Field(False, description="as for `heal`: the proof is re-run before the fix is applied")


class AppliedOut(BaseModel):
    run_id: str
    version: str | None = Field(description="the fixed flow's new version (null: resumed as it was)")
    resumed_from: str = Field(description="the step the run resumed from")


# --- routes ---------------------------------------------------------------------------------------------------


@router.post("/runs/{run_id}/heal", response_model=HealingOut, responses=errors(404, 409, 422, 429))
def heal_run(
    run_id: RunId,
    principal: LimitedWriter,
    runtime: RuntimeDep,
    accounts: AccountsDep,
    config: SettingsDep,
    body: HealIn | None = None,
) -> HealingOut:
    """Diagnose the run's failed step, propose a fix as a diff and prove it by replaying the step on its recorded
    input (nothing is stored; the step is executed again, alone)."""
    owned(runtime, principal, run_id)
    effects = (body or HealIn()).allow_effects
    found = healing_of(runtime.orchestrator, config, run_id, allow_effects=effects)
    if effects and found.verification is not None and found.verification.executed:
        # a step with outside effects (a POST, an email) was executed again at the caller's request: on record
        accounts.audit(principal, "heal.replay", run_id, {"step": found.failed.key, "ok": found.verification.ok})
    return healing_out(found)


@router.post("/runs/{run_id}/heal/apply", response_model=AppliedOut, responses=errors(404, 409, 422, 429))
def apply_healing(
    run_id: RunId,
    principal: LimitedWriter,
    runtime: RuntimeDep,
    accounts: AccountsDep,
    config: SettingsDep,
    body: ApplyIn | None = None,
) -> AppliedOut:
    """Heal again (the proof is re-run now, so what is applied is what was just verified), store the fixed version
    and resume the run from its failed step; ``as_is`` resumes on the same version without a change."""
    body = body or ApplyIn()
    owned(runtime, principal, run_id)
    done = apply_reviewed(
        runtime.orchestrator,
        config,
        run_id,
        as_is=body.as_is,
        force=body.force,
        reviewed=body.fingerprint,
        allow_effects=body.allow_effects,
        triggers=runtime.triggers,
    )
    detail: dict[str, Any] = {"step": done.resumed_from, "version": done.version, "as_is": body.as_is}
    if done.healing is not None:
        cause = done.healing.diagnosis
        detail |= {"cause": cause.cause, "by": cause.by, "verified": done.healing.verified, "force": body.force}
    accounts.audit(principal, "heal.apply", run_id, detail)
    return AppliedOut(run_id=run_id, version=done.version, resumed_from=done.resumed_from)


def healing_out(healing: Healing) -> HealingOut:
    return HealingOut(**healing.to_dict(), fingerprint=fingerprint(healing))
