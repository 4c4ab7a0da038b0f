"""Runs (``/api/v1``): start one (its input checked against the flow's ``inputs``), list and show them with their
steps, read a step's input and output, and act on a run: cancel, pause, resume, approve or reject a waiting
approval, re-run from the failed steps (optionally on a newer version of the flow).

A run belongs to the owner of its flow; another owner's run does not exist here (404, never 403). An action
that does not apply to the run as it stands is refused with 409 and a code that says why (``run.finished``,
``run.not_paused``, ``run.no_pending_approval``, ``run.not_rerunnable``, ``run.refused``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from api.accounts import Principal
from api.v1.deps import AccountsDep, Limit, Page, Reader, RequestBody, RuntimeDep, Writer, after, page
from api.v1.errors import ApiError, Problem
from engine.core.state import RunState, RunStatus, StepKey, StepStatus
from engine.dsl.inputs import RunInputError
from engine.runtime import owned_runs, queries
from engine.runtime.queries import RunSummary, StepRecord
from engine.runtime.runtime import Runtime

router = APIRouter(tags=["runs"])

Status = Literal["pending", "running", "awaiting_approval", "paused", "succeeded", "failed", "cancelled"]
RunId = Annotated[str, Path(max_length=26, description="the run's id")]
StepKeyPath = Annotated[str, Path(max_length=300, description="a step key: `node`, or `loop[3].node` in a loop")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such run of yours"}}
REFUSED: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"model": Problem, "description": "the action does not apply to the run as it stands"},
}


# --- shapes ---------------------------------------------------------------------------------------------------


class StartRun(RequestBody):
    input: dict[str, Any] | None = Field(None, description="the run's input, checked against the flow's `inputs`")
    version: str | None = Field(None, max_length=80, description="a version id of the flow; default: the latest")


class Started(BaseModel):
    run_id: str
    status: Status


class RunOut(BaseModel):
    id: str
    flow_id: str
    version_id: str
    status: Status
    trigger: str = Field(description="what started it: manual, webhook, schedule, event, flow")
    created_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    total_cion: float
    attempt: int = Field(description="1, then one more per re-run")
    error: dict[str, Any] | None
    parent_run_id: str | None


class RunPage(Page[RunOut]):
    """Runs, newest first."""


class StepOut(BaseModel):
    key: str
    node_id: str
    iteration: str | None
    node_type: str | None
    status: str
    attempt: int
    run_attempt: int
    waiting: str | None = Field(description="what a running step waits for: retry, approval, timer, child")
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    input_preview: str | None
    output_preview: str | None
    error: dict[str, Any] | None
    logs: list[list[str]] | None = Field(description="[level, text] lines")
    cost_cion: float
    usage: dict[str, Any] | None = Field(description="what a metered step measured: model, tokens, latency, cost")
    reused: bool = Field(description="a re-run kept this step's earlier output")
    child_run_id: str | None


class ApprovalOut(BaseModel):
    step: str
    message: str | None
    approvers: list[str] | None


class RunDetail(RunOut):
    input: Any
    outputs: Any
    steps: list[StepOut]
    approvals: list[ApprovalOut] = Field(description="approvals waiting for a decision")


class StepPayload(BaseModel):
    run_id: str
    step: str
    attempt: int
    value: Any = Field(description="the payload as JSON (a large output is read from the blob store)")
    truncated: bool = Field(
        False, description="inputs are kept as a secret-free preview: true when it was cut, `value` is then its text"
    )


class ApprovalDecision(RequestBody):
    step: str | None = Field(None, max_length=300, description="which approval, when several wait (node or key)")
    comment: str | None = Field(None, max_length=2000)


class Rerun(RequestBody):
    from_step: str | None = Field(
        None,
        max_length=300,
        description="re-run from this step (a node id or a step key): it and what depends on it run again; "
        "without it, a failed or cancelled run re-runs from its failed steps",
    )
    version: str | None = Field(None, max_length=80, description="a newer version id of the flow, or `latest`")


class ActionDone(BaseModel):
    run_id: str
    status: Status
    step: str | None = Field(None, description="the approval step decided")


# --- reading --------------------------------------------------------------------------------------------------


@router.post(
    "/flows/{flow_id}/runs",
    response_model=Started,
    status_code=201,
    responses={404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}},
)
def start_run(
    flow_id: Annotated[str, Path(max_length=64)], principal: Writer, runtime: RuntimeDep, body: StartRun | None = None
) -> Started:
    """Start a run of one of your flows (its latest version unless ``version`` names another); no body: no input."""
    body = body or StartRun()
    flow = owned_runs.flow_of(runtime.db, principal.owner_id, flow_id)
    if flow is None or flow[1] or flow[0] is None:
        raise ApiError(404, "flow.not_found", f"you have no flow {flow_id!r}", hint="GET /api/v1/flows lists yours")
    version = body.version or flow[0]
    if not owned_runs.is_version_of(runtime.db, version, flow_id):
        raise ApiError(
            422,
            "run.version_invalid",
            f"{version!r} is not a version of flow {flow_id!r}",
            hint=f"GET /api/v1/flows/{flow_id}/versions lists them",
            location=[{"field": "version", "message": "not a version of this flow"}],
        )
    try:
        run_id = runtime.orchestrator.start_run(version, body.input, trigger_kind="manual", trigger={"kind": "api"})
    except RunInputError as e:
        located = [{"field": _input_field(path), "message": message} for path, message in e.problems]
        raise ApiError(422, e.code, e.message, hint=e.hint, location=located) from None
    return Started(run_id=run_id, status=_status(runtime, run_id))


@router.get("/runs", response_model=RunPage, responses={422: {"model": Problem}})
def list_runs(
    principal: Reader,
    runtime: RuntimeDep,
    limit: Limit = 50,
    flow: Annotated[str | None, Query(max_length=64, description="only this flow's runs")] = None,
    status: Status | None = None,
    since: Annotated[datetime | None, Query(description="created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="created before (ISO 8601)")] = None,
    cursor: Annotated[str | None, Query(max_length=100, description="`next_cursor` of the previous page")] = None,
) -> RunPage:
    """Your runs, newest first."""
    where = owned_runs.RunFilter(flow, status, _aware(since, "since"), _aware(until, "until"), after(cursor, "runs"))
    found = owned_runs.page(runtime.db, principal.owner_id, where, limit + 1)
    items, next_cursor = page([_run_out(s) for s in found], limit, lambda run: run.id, "runs")
    return RunPage(items=items, next_cursor=next_cursor)


@router.get("/runs/{run_id}", response_model=RunDetail, responses=NOT_FOUND)
def show_run(run_id: RunId, principal: Reader, runtime: RuntimeDep) -> RunDetail:
    """A run with its steps (the latest attempt of each), their previews, costs, usage and errors, and the
    approvals that wait for a decision."""
    owned(runtime, principal, run_id)
    summary = queries.find_run(runtime.db, run_id)
    if summary is None:  # deleted between the two reads
        raise _not_found(run_id)
    steps = [_step_out(s) for s in queries.run_steps_of(runtime.db, run_id)]
    approvals = [ApprovalOut(**a) for a in queries.pending_approvals(runtime.db, run_id)]
    base = _run_out(summary).model_dump()
    return RunDetail(**base, input=summary.input, outputs=summary.outputs, steps=steps, approvals=approvals)


@router.get("/runs/{run_id}/steps/{key}/output", response_model=StepPayload, responses=NOT_FOUND)
def step_output(run_id: RunId, key: StepKeyPath, principal: Reader, runtime: RuntimeDep) -> StepPayload:
    """The output a step's latest attempt recorded, whole (404 when it has none: not run, failed, skipped)."""
    owned(runtime, principal, run_id)
    state = runtime.orchestrator.state(run_id)
    step_key = _step_key(state, key)
    step = state.step(step_key)
    if step.status is not StepStatus.SUCCEEDED:
        raise ApiError(
            404,
            "step.output_not_found",
            f"step {key!r} of run {run_id} has no output: it is {step.status}",
            hint=f"a step has an output once it succeeded; GET /api/v1/runs/{run_id} shows where each step is",
        )
    return StepPayload(run_id=run_id, step=str(step_key), attempt=step.attempt, value=step.output)


@router.get("/runs/{run_id}/steps/{key}/input", response_model=StepPayload, responses=NOT_FOUND)
def step_input(run_id: RunId, key: StepKeyPath, principal: Reader, runtime: RuntimeDep) -> StepPayload:
    """The input a step's latest attempt was called with, secrets blanked: whole, or (``truncated``: true) the
    preview cut at its limit when the whole input was over the payload size limit."""
    owned(runtime, principal, run_id)
    found = owned_runs.recorded_input(runtime.db, runtime.orchestrator.blobs, run_id, key)
    if found is None:
        raise ApiError(
            404,
            "step.input_not_found",
            f"run {run_id} has no recorded input for step {key!r}",
            hint="inputs are kept for steps a worker executed (not for approvals, delays and loops)",
        )
    return StepPayload(run_id=run_id, step=key, attempt=found.attempt, value=found.value, truncated=found.truncated)


# --- acting ---------------------------------------------------------------------------------------------------


@router.post("/runs/{run_id}/cancel", response_model=ActionDone, responses=REFUSED)
def cancel(run_id: RunId, principal: Writer, runtime: RuntimeDep, accounts: AccountsDep) -> ActionDone:
    """Cancel a run that has not finished (its running steps are abandoned, waiting ones closed)."""
    state = _state(runtime, principal, run_id)
    _not_finished(state, "cancelled")
    runtime.orchestrator.cancel(run_id, by=principal.actor)
    accounts.audit(principal, "run.cancel", run_id)
    return _done(runtime, run_id)


@router.post("/runs/{run_id}/pause", response_model=ActionDone, responses=REFUSED)
def pause(run_id: RunId, principal: Writer, runtime: RuntimeDep, accounts: AccountsDep) -> ActionDone:
    """Pause a run: steps running now finish, no new step starts until it is resumed."""
    state = _state(runtime, principal, run_id)
    _not_finished(state, "paused")
    if state.paused:
        raise ApiError(409, "run.paused", f"run {run_id} is paused already", hint=f"POST /api/v1/runs/{run_id}/resume")
    runtime.orchestrator.pause(run_id)
    accounts.audit(principal, "run.pause", run_id)
    return _done(runtime, run_id)


@router.post("/runs/{run_id}/resume", response_model=ActionDone, responses=REFUSED)
def resume(run_id: RunId, principal: Writer, runtime: RuntimeDep, accounts: AccountsDep) -> ActionDone:
    """Resume a paused run."""
    state = _state(runtime, principal, run_id)
    if not state.paused or state.status.finished:
        raise ApiError(
            409,
            "run.not_paused",
            f"run {run_id} is {state.status}, not paused",
            hint=f"only a paused run resumes; a failed or cancelled one re-runs: POST /api/v1/runs/{run_id}/rerun",
        )
    runtime.orchestrator.resume(run_id)
    accounts.audit(principal, "run.resume", run_id)
    return _done(runtime, run_id)


@router.post("/runs/{run_id}/approve", response_model=ActionDone, responses=REFUSED)
def approve(
    run_id: RunId, principal: Writer, runtime: RuntimeDep, accounts: AccountsDep, body: ApprovalDecision | None = None
) -> ActionDone:
    """Approve the run's waiting approval (name it with ``step`` when several wait); the run goes on."""
    return _decide(runtime, accounts, principal, run_id, body or ApprovalDecision(), approved=True)


@router.post("/runs/{run_id}/reject", response_model=ActionDone, responses=REFUSED)
def reject(
    run_id: RunId, principal: Writer, runtime: RuntimeDep, accounts: AccountsDep, body: ApprovalDecision | None = None
) -> ActionDone:
    """Reject the run's waiting approval: the approval step fails with the comment (the flow's ``on_error``
    decides what follows)."""
    return _decide(runtime, accounts, principal, run_id, body or ApprovalDecision(), approved=False)


@router.post("/runs/{run_id}/rerun", response_model=ActionDone, responses={**REFUSED, 422: {"model": Problem}})
def rerun(
    run_id: RunId, principal: Writer, runtime: RuntimeDep, accounts: AccountsDep, body: Rerun | None = None
) -> ActionDone:
    """Re-run a failed or cancelled run from its failed steps, keeping the outputs that still hold; with
    ``from_step``, re-run any finished run (a succeeded one too) from that step: it and every step that depends on
    it run again, the others keep their outputs. With ``version``, on that version of the flow (a step whose node
    changed runs again)."""
    body = body or Rerun()
    state = _state(runtime, principal, run_id)
    allowed = (RunStatus.FAILED, RunStatus.CANCELLED) + ((RunStatus.SUCCEEDED,) if body.from_step else ())
    if state.status not in allowed:
        raise ApiError(
            409,
            "run.not_rerunnable",
            f"run {run_id} is {state.status}: only failed or cancelled runs re-run"
            + ("" if body.from_step else " (a succeeded one re-runs from a chosen step: from_step)"),
            hint="cancel it first" if not state.status.finished else "name from_step, or start a new run",
        )
    from_node = _from_node(runtime, state, body.from_step) if body.from_step is not None else None
    version = body.version
    if version is not None:
        flow_id = owned(runtime, principal, run_id).flow_id
        if version == "latest":
            version = runtime.orchestrator.latest_version(flow_id)
        if not owned_runs.is_version_of(runtime.db, version, flow_id):
            raise ApiError(
                422,
                "run.version_invalid",
                f"{version!r} is not a version of flow {flow_id!r}",
                hint=f"GET /api/v1/flows/{flow_id}/versions lists them (or send `latest`)",
                location=[{"field": "version", "message": "not a version of the run's flow"}],
            )
    runtime.orchestrator.rerun(run_id, version, from_node)
    detail = {k: v for k, v in (("version", version), ("from_step", from_node)) if v}
    accounts.audit(principal, "run.rerun", run_id, detail or None)
    return _done(runtime, run_id)


def _decide(
    runtime: Runtime,
    accounts: AccountsDep,
    principal: Principal,
    run_id: str,
    body: ApprovalDecision,
    *,
    approved: bool,
) -> ActionDone:
    state = _state(runtime, principal, run_id)
    if state.approvals == 0:
        raise ApiError(
            409,
            "run.no_pending_approval",
            f"run {run_id} is {state.status}: no approval waits for a decision",
            hint=f"GET /api/v1/runs/{run_id} shows its steps",
        )
    owner = accounts.owner(principal.owner_id) or {}
    by = str(owner.get("email") or owner.get("name") or principal.actor)
    key = runtime.orchestrator.approve(run_id, approved, by=by, comment=body.comment, node=body.step or "")
    action = "run.approve" if approved else "run.reject"
    accounts.audit(principal, action, run_id, {"step": str(key), "comment": body.comment})
    return _done(runtime, run_id, str(key))


# --- helpers --------------------------------------------------------------------------------------------------


def owned(runtime: Runtime, principal: Principal, run_id: str) -> owned_runs.RunHead:
    """The caller's run (another owner's is not found)."""
    found = owned_runs.head(runtime.db, run_id)
    if found is None or found.owner_id != principal.owner_id:
        raise _not_found(run_id)
    return found


def _not_found(run_id: str) -> ApiError:
    return ApiError(404, "run.not_found", f"you have no run {run_id!r}", hint="GET /api/v1/runs lists yours")


def _state(runtime: Runtime, principal: Principal, run_id: str) -> RunState:
    owned(runtime, principal, run_id)
    return runtime.orchestrator.state(run_id)


def _not_finished(state: RunState, what: str) -> None:
    if state.status.finished:
        raise ApiError(
            409,
            "run.finished",
            f"run {state.run_id} has finished ({state.status}): it cannot be {what}",
            hint=f"re-run it instead: POST /api/v1/runs/{state.run_id}/rerun"
            + ("" if str(state.status) in ("failed", "cancelled") else ' with {"from_step": "<node id>"}'),
        )


def _from_node(runtime: Runtime, state: RunState, from_step: str) -> str:
    """The node a re-run starts at: ``from_step`` is a node id or a step key (``loop[2].node``)."""
    try:
        node = StepKey.parse(from_step).node
    except ValueError:
        node = from_step
    if node not in runtime.orchestrator.plan(state.version_id).nodes:
        raise ApiError(
            422,
            "run.from_step_invalid",
            f"run {state.run_id}'s flow has no step {from_step!r}",
            hint="name a node of the flow (GET /api/v1/runs/{id} lists the run's steps)",
            location=[{"field": "from_step", "message": "not a node of the run's flow version"}],
        )
    return node


def _step_key(state: RunState, key: str) -> StepKey:
    try:
        parsed = StepKey.parse(key)
    except ValueError:
        parsed = None
    if parsed is None or parsed not in state.steps:
        raise ApiError(
            404,
            "step.not_found",
            f"run {state.run_id} has no step {key!r}",
            hint=f"name a step as GET /api/v1/runs/{state.run_id} lists them (`node`, or `loop[2].node`)",
        )
    return parsed


def _status(runtime: Runtime, run_id: str) -> Status:
    return str(runtime.status(run_id))  # type: ignore[return-value]


def _done(runtime: Runtime, run_id: str, step: str | None = None) -> ActionDone:
    return ActionDone(run_id=run_id, status=_status(runtime, run_id), step=step)


def _run_out(s: RunSummary) -> RunOut:
    return RunOut(
        id=s.id,
        flow_id=s.flow_id,
        version_id=s.version_id,
        status=s.status,
        trigger=s.trigger_kind,
        created_at=s.created_at,
        finished_at=s.finished_at,
        duration_ms=s.duration_ms,
        total_cion=s.total_cion,
        attempt=s.attempt,
        error=s.error,
        parent_run_id=s.parent_run_id,
    )


def _step_out(s: StepRecord) -> StepOut:
    values = {name: getattr(s, name) for name in StepOut.model_fields if name != "duration_ms"}
    return StepOut(**values, duration_ms=s.duration_ms)


def _input_field(path: str) -> str:
    return "input" + path[len("inputs") :] if path.startswith("inputs") else path


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ApiError(
            422,
            "request.invalid",
            f"{name} needs a time zone, e.g. 2026-01-31T09:00:00Z",
            hint="end the time with Z (UTC) or an offset such as +01:00",
            location=[{"field": name, "message": "no time zone"}],
        )
    return value
