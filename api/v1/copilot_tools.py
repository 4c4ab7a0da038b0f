"""Jules's one-shot tools (``/api/v1/copilot/{plan,estimate,optimise,advice}``), and what every co-pilot route
shares: the settings, the Jules of the caller (their model and secret names), and the per-owner rate limit.

- ``plan``: a sentence -> a validated draft (YAML, verdict, planner, forecast);
- ``estimate``: a flow -> its forecast per node, per run and per month, and cheaper alternatives (copilot.savings);
- ``optimise``: a flow -> shorter prompts for its llm nodes, with the tokens and C-ION they save (prompt_tuning);
- ``advice``: a flow -> error-handling findings (retry, timeout, on_failure, approval, budget) and the flow with
  all of them applied.

None of them stores anything. ``plan`` may call the configured model (write scope); the others are deterministic.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.accounts import Principal
from api.jules import jules_for, model_choice
from api.limits import RateLimit
from api.settings import Settings
from api.v1.deps import Reader, RequestBody, RuntimeDep, Writer, who
from api.v1.errors import ApiError, Problem
from copilot.advice import AdviceError, advise, apply_advice
from copilot.chat import Jules, flow_id_for, with_flow_id
from copilot.cost import EXPECTED_ITEMS, forecast
from copilot.planning import draft as offline_draft
from copilot.prompt_tuning import NodeTuning, TuningError, tune_flow, tune_node
from copilot.savings import suggest_savings
from engine.dsl.forecast import flow_forecast
from engine.dsl.issue import FlowValidationError
from engine.dsl.model import FLOW_ID_PATTERN, Flow
from engine.dsl.validator import load_flow
from engine.nodetypes.registry import Registry

router = APIRouter(tags=["copilot"])

MAX_TEXT = 4000
MAX_YAML = 1024 * 1024
_STATUS = {
    401: "no valid token or session",
    403: "the token's scope is too small",
    404: "not found (another owner's things do not exist for you)",
    409: "the change no longer applies (superseded, decided, or made on an older draft)",
    422: "the request or the flow is not valid (the error says where)",
    429: "too many co-pilot calls: wait the Retry-After seconds",
}
_lock = threading.Lock()


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's refusals (401 and 403 always)."""
    return {s: {"model": Problem, "description": _STATUS[s]} for s in (401, 403, *statuses)}


ERRORS = errors(422, 429)


# --- what every co-pilot route shares -------------------------------------------------------------------------------


def settings(request: Request) -> Settings:
    """The app's settings (``app.state.settings``), read from the environment once if the app was given none."""
    found: Settings | None = getattr(request.app.state, "settings", None)
    if found is None:
        with _lock:
            found = getattr(request.app.state, "settings", None) or Settings()
            request.app.state.settings = found
    return found


SettingsDep = Annotated[Settings, Depends(settings)]


def jules(principal: Annotated[Principal, Depends(who)], runtime: RuntimeDep, config: SettingsDep) -> Jules:
    """Jules for the caller: the configured model (or offline), grounded in the caller's secret names."""
    names = tuple(runtime.orchestrator.secrets.names(principal.owner_id))
    return jules_for(runtime.db, runtime.orchestrator.registry, config, names, model=model_choice(config))


JulesDep = Annotated[Jules, Depends(jules)]


def _limit(request: Request, config: Settings) -> RateLimit:
    found: RateLimit | None = getattr(request.app.state, "copilot_limit", None)
    if found is None:
        with _lock:
            found = getattr(request.app.state, "copilot_limit", None) or RateLimit(config.copilot_rate_per_minute)
            request.app.state.copilot_limit = found
    return found


def _take(request: Request, principal: Principal, config: Settings) -> Principal:
    """The caller, if their owner has a co-pilot call left this minute (429 with Retry-After otherwise)."""
    wait = _limit(request, config).take(principal.owner_id)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            "request.rate_limited",
            f"too many co-pilot calls: {config.copilot_rate_per_minute:g} a minute per owner",
            hint=f"try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    return principal


def copilot_wait(request: Request, owner_id: str) -> float:
    """For the UI's Jules (``app.state.ui_copilot_wait``): 0.0 when the owner may make a co-pilot call now (it is
    counted against the same per-owner budget as the API's), else the seconds to wait."""
    return _limit(request, settings(request)).take(owner_id)


def _limited_reader(request: Request, principal: Reader, config: SettingsDep) -> Principal:
    return _take(request, principal, config)


def _limited_writer(request: Request, principal: Writer, config: SettingsDep) -> Principal:
    return _take(request, principal, config)


LimitedReader = Annotated[Principal, Depends(_limited_reader)]
LimitedWriter = Annotated[Principal, Depends(_limited_writer)]


# --- shapes ---------------------------------------------------------------------------------------------------------


class PlanIn(RequestBody):
    text: str = Field(min_length=1, max_length=MAX_TEXT, description="what to automate, in a sentence or two")
    flow_id: str | None = Field(
        None, pattern=FLOW_ID_PATTERN, description="the draft's id (default: from the first words)"
    )


class PlanOut(BaseModel):
    yaml: str = Field(description="the draft ('' when the model found no valid flow)")
    valid: bool
    problems: str = Field(description="why it is not valid (the validator's words)")
    planner: str = Field(description="offline, or model:<name>")
    cost: str = Field(description="the forecast in words (valid drafts)")
    latency_ms: float
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class FlowIn(RequestBody):
    yaml: str = Field(min_length=1, max_length=MAX_YAML, description="a FluxGraph flow")


class EstimateIn(FlowIn):
    items: int = Field(EXPECTED_ITEMS, ge=1, le=100_000, description="foreach items a run is assumed to have")


class NodeCost(BaseModel):
    node_id: str
    type: str
    cion: float = Field(description="C-ION per execution (upper bound)")
    per_item: bool = Field(description="inside a foreach: once per item")
    basis: str


class FieldChange(BaseModel):
    node_id: str
    field: str = Field(description="dotted path inside the node, e.g. with.model")
    value: Any


class Alternative(BaseModel):
    node_id: str
    changes: list[FieldChange]
    new_nodes: list[dict[str, Any]] = Field(description="nodes inserted just before node_id")
    saves_per_run: float
    saves_per_month: float | None
    why: str
    summary: str


class EstimateOut(BaseModel):
    flow_id: str
    nodes: list[NodeCost]
    per_run: float = Field(description="C-ION per run, the assumed foreach items included")
    fixed: float
    per_item: float
    items: int
    runs_per_month: int | None = Field(description="from the cron triggers; null: it runs when something happens")
    per_month: float | None
    summary: str
    alternatives: list[Alternative] = Field(description="cheaper alternatives, biggest saving first")


class OptimiseIn(FlowIn):
    node_id: str | None = Field(None, min_length=1, max_length=64, description="one llm node (default: all)")


class PromptRewriteOut(BaseModel):
    field: str
    original: str
    rewritten: str
    original_tokens: int
    rewritten_tokens: int
    saved_tokens: int
    rules: list[str]


class NodeTuningOut(BaseModel):
    node_id: str
    saved_tokens: int
    cion_per_run: float = Field(description="C-ION the shorter prompts save per run")
    with_: dict[str, str] = Field(alias="with", description="the changed fields, for the node's `with`")
    rewrites: list[PromptRewriteOut]


class OptimiseOut(BaseModel):
    flow_id: str
    nodes: list[NodeTuningOut]
    saved_tokens: int
    cion_per_run: float


class AdviceIn(FlowIn):
    alert_to: str = Field(
        "ops@example.com", max_length=254, pattern=r"^[^@\s]+@[^@\s]+$", description="who gets the failure alert"
    )


class Finding(BaseModel):
    kind: str = Field(description="retry | timeout | on_failure | approval | budget")
    node_id: str | None
    field: str
    fragment: str = Field(description="the YAML to add")
    why: str


class AdviceOut(BaseModel):
    flow_id: str
    findings: list[Finding]
    applied: str | None = Field(description="the flow with every finding applied (null if they cannot be)")


# --- routes ---------------------------------------------------------------------------------------------------------


@router.post("/copilot/plan", response_model=PlanOut, responses=ERRORS)
def plan(body: PlanIn, principal: LimitedWriter, runtime: RuntimeDep, config: SettingsDep) -> PlanOut:
    """A draft flow for a sentence, checked by the validator (the configured model, else the offline planner)."""
    registry = runtime.orchestrator.registry
    flow_id = body.flow_id or flow_id_for(body.text)
    choice = model_choice(config)
    if choice is None:
        found = offline_draft(body.text, flow_id=flow_id, registry=registry)
        return PlanOut(
            yaml=found.yaml,
            valid=found.valid,
            problems=found.problems,
            planner=found.planner,
            cost=found.cost,
            latency_ms=round(found.latency_ms, 1),
        )
    from copilot.model_planner import plan_with_model

    planned = plan_with_model(
        body.text,
        registry,
        model=choice.model,
        api_base=choice.api_base,
        api_key=choice.api_key,
        alias=config.model or "default",
        aliases=tuple(config.model_routes()),
        secrets=tuple(runtime.orchestrator.secrets.names(principal.owner_id)),
        timeout=choice.timeout,
        mode=choice.mode,
    )
    text, cost = "", ""
    if planned.valid and planned.yaml is not None:
        text = with_flow_id(planned.yaml, flow_id)
        cost = forecast(_flow(text, registry), registry, datetime.now(UTC)).describe()
    return PlanOut(
        yaml=text,
        valid=bool(text),
        problems=planned.problems,
        planner=planned.planner,
        cost=cost,
        latency_ms=round(planned.latency_ms, 1),
        tokens_in=planned.tokens_in,
        tokens_out=planned.tokens_out,
        cost_usd=planned.cost_usd,
    )


@router.post("/copilot/estimate", response_model=EstimateOut, responses=ERRORS)
def estimate(body: EstimateIn, principal: LimitedReader, runtime: RuntimeDep) -> EstimateOut:
    """What a flow costs in C-ION, node by node, per run and per month, and what would make it cheaper."""
    registry = runtime.orchestrator.registry
    flow = _flow(body.yaml, registry)
    now = datetime.now(UTC)
    total = forecast(flow, registry, now, items=body.items)
    return EstimateOut(
        flow_id=flow.id,
        nodes=[
            NodeCost(node_id=n.node_id, type=n.type, cion=n.estimate.cion, per_item=n.per_item, basis=n.estimate.basis)
            for n in flow_forecast(flow, registry).nodes
        ],
        per_run=total.per_run,
        fixed=total.fixed,
        per_item=total.per_item,
        items=total.items,
        runs_per_month=total.runs_per_month,
        per_month=total.per_month,
        summary=total.describe(),
        alternatives=[
            Alternative(
                node_id=s.node_id,
                changes=[FieldChange(node_id=c.node_id, field=c.field, value=c.value) for c in s.changes],
                new_nodes=[dict(n) for n in s.new_nodes],
                saves_per_run=s.per_run,
                saves_per_month=s.per_month,
                why=s.why,
                summary=s.describe(),
            )
            for s in suggest_savings(flow, registry, now, items=body.items)
        ],
    )


@router.post("/copilot/optimise", response_model=OptimiseOut, responses=ERRORS)
def optimise(body: OptimiseIn, principal: LimitedReader, runtime: RuntimeDep) -> OptimiseOut:
    """Shorter prompts for the flow's llm nodes, with the tokens and C-ION per run each saves."""
    registry = runtime.orchestrator.registry
    flow = _flow(body.yaml, registry)
    try:
        tunings = [tune_node(flow, body.node_id, registry)] if body.node_id else tune_flow(flow, registry)
    except TuningError as e:
        raise ApiError(422, "copilot.node_invalid", e.message, hint=e.hint, location={"field": "node_id"}) from None
    return OptimiseOut(
        flow_id=flow.id,
        nodes=[_tuning(t) for t in tunings],
        saved_tokens=sum(t.saved_tokens for t in tunings),
        cion_per_run=round(sum(t.cion_per_run for t in tunings), 6),
    )


@router.post("/copilot/advice", response_model=AdviceOut, responses=ERRORS)
def advice(body: AdviceIn, principal: LimitedReader, runtime: RuntimeDep) -> AdviceOut:
    """Error-handling findings for a flow (retries, timeouts, a failure alert, approvals, a budget)."""
    registry = runtime.orchestrator.registry
    flow = _flow(body.yaml, registry)
    found = advise(flow, registry, alert_to=body.alert_to)
    applied: str | None = body.yaml
    if found:
        try:
            applied = apply_advice(body.yaml, found, registry)
        except (AdviceError, FlowValidationError):  # YAML the editor cannot change safely: the findings still stand
            applied = None
    return AdviceOut(
        flow_id=flow.id,
        findings=[
            Finding(kind=a.kind, node_id=a.node_id, field=a.field, fragment=a.fragment, why=a.why) for a in found
        ],
        applied=applied,
    )


# --- small pieces ---------------------------------------------------------------------------------------------------


def _flow(text: str, registry: Registry) -> Flow:
    """The request's flow, validated (FlowValidationError: 422 with the located issues)."""
    return load_flow(text, "<request>", registry=registry)


def _tuning(t: NodeTuning) -> NodeTuningOut:
    return NodeTuningOut.model_validate(
        {
            "node_id": t.node_id,
            "saved_tokens": t.saved_tokens,
            "cion_per_run": t.cion_per_run,
            "with": t.with_,
            "rewrites": [
                PromptRewriteOut(
                    field=r.field,
                    original=r.original,
                    rewritten=r.rewritten,
                    original_tokens=r.original_tokens,
                    rewritten_tokens=r.rewritten_tokens,
                    saved_tokens=r.saved_tokens,
                    rules=list(r.rules),
                )
                for r in t.rewrites
            ],
        }
    )
