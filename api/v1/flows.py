"""Flows (``/api/v1/flows``): save from YAML or JSON, validate, list and search, show, versions and diffs,
activate, delete (soft), export and import.

Every query is scoped to the caller's owner: another owner's flow, like a deleted one, does not exist here (404,
never 403). A flow is sent as YAML (``application/yaml`` or ``text/plain``) or as JSON: the FluxGraph document
itself, or its YAML wrapped as ``{"yaml": "…"}``. A JSON document is stored as its canonical YAML (what ``ionflux
fmt`` writes), so versions, diffs and exports are YAML whichever way a flow came, and the same flow gets the same
version id. An invalid flow is refused with every issue located (422, ``error.location.issues``): by line and
column in YAML, by path (``nodes[1].needs[0]``) in a JSON document.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.accounts import Principal
from api.v1.deps import AccountsDep, Admin, Cursor, Limit, Reader, RuntimeDep, Writer, after, page
from api.v1.errors import ApiError, ErrorBody
from api.v1.flow_shapes import (
    FLOW_BODY,
    IMPORT_BODY,
    Activate,
    Activation,
    ArmedTrigger,
    DeclaredTrigger,
    FlowBody,
    FlowDetail,
    FlowDiffOut,
    FlowItem,
    FlowPage,
    Forecast,
    ForecastNode,
    ImportReport,
    ImportRequest,
    ImportResult,
    IssueOut,
    SavedFlow,
    StructuralDiff,
    Submitted,
    TriggerSummary,
    Validation,
    VersionDetail,
    VersionOut,
    VersionPage,
    document,
    import_body,
    problems,
    too_large,
    too_large_error,
)
from engine.dsl.canonical import to_yaml
from engine.dsl.canonical import version_id as content_id
from engine.dsl.diff import diff as flow_diff
from engine.dsl.forecast import flow_forecast
from engine.dsl.issue import FlowValidationError, Issue
from engine.dsl.model import FLOW_ID_PATTERN, Flow
from engine.dsl.validator import Report, check_data, check_flow, load_data, load_flow
from engine.errors import IonfluxError
from engine.nodetypes.registry import Registry
from engine.runtime import flow_queries
from engine.runtime.flow_queries import FlowRecord
from engine.runtime.runtime import Runtime
from engine.runtime.triggers import Armed

router = APIRouter(prefix="/flows", tags=["flows"])

FILE = "flow.yaml"  # the name issues and messages give the submitted document
JSON_FILE = "flow.json"  # … and a document sent as JSON

FlowIdPath = Annotated[str, Path(pattern=FLOW_ID_PATTERN, description="the flow's `id`")]
VersionPath = Annotated[str, Path(min_length=1, max_length=80, description="a version id (content id)")]
VersionQuery = Annotated[str | None, Query(min_length=1, max_length=80)]


# --- helpers ------------------------------------------------------------------------------------------------


def _issue(issue: Issue) -> IssueOut:
    return IssueOut.model_validate(issue.to_dict())


def _owned(runtime: Runtime, who: Principal, flow_id: str) -> FlowRecord:
    found = flow_queries.get(runtime.db, who.owner_id, flow_id)
    if found is None:
        raise ApiError(404, "flow.not_found", f"no flow {flow_id!r} of yours", hint="GET /api/v1/flows lists them")
    return found


def _version(runtime: Runtime, flow: FlowRecord, version: str) -> flow_queries.VersionRecord:
    found = flow_queries.version(runtime.db, flow.id, version)
    if found is None:
        raise ApiError(
            404,
            "flow_version.not_found",
            f"flow {flow.id!r} has no version {version!r}",
            hint=f"GET /api/v1/flows/{flow.id}/versions lists them",
        )
    return found


def _latest(runtime: Runtime, record: FlowRecord) -> Flow:
    if record.latest_version is None:  # save_flow always sets it: a row without one was never a saved flow
        raise ApiError(404, "flow.not_found", f"flow {record.id!r} has no stored version")
    return runtime.orchestrator.plan(record.latest_version).flow


def _item(flow: FlowRecord) -> FlowItem:
    header = flow.header
    return FlowItem(
        id=flow.id,
        name=flow.name,
        description=header["description"],
        latest_version=flow.latest_version,
        active_version=flow.active_version,
        created_at=flow.created_at,
        updated_at=flow.updated_at,
        triggers=TriggerSummary(types=header["trigger_types"], armed=flow.armed),
    )


def _armed(trigger: Armed, request: Request) -> ArmedTrigger:
    config = trigger.config
    return ArmedTrigger(
        position=trigger.position,
        kind=trigger.kind,
        version=trigger.version_id,
        enabled=bool(config.get("enabled", True)),
        url=f"{str(request.base_url).rstrip('/')}/hooks/{trigger.token}" if trigger.token else None,
        cron=config.get("cron"),
        timezone=config.get("timezone") if trigger.kind == "cron" else None,
        subject=config.get("subject"),
        next_fire_at=trigger.next_fire_at,
        last_fire_at=trigger.last_fire_at,
    )


def _file(source: Submitted) -> str:
    return FILE if isinstance(source, str) else JSON_FILE


def _check(source: Submitted, registry: Registry) -> Report:
    if isinstance(source, str):
        return check_flow(source, FILE, registry=registry)
    return check_data(source, JSON_FILE, registry=registry)


def _save(runtime: Runtime, who: Principal, source: Submitted) -> SavedFlow:
    registry = runtime.orchestrator.registry
    if isinstance(source, str):
        text, flow = source, load_flow(source, FILE, registry=registry)
    else:
        flow = load_data(source, JSON_FILE, registry=registry)
        text = to_yaml(flow)  # stored as YAML, like every other version: exports and diffs stay YAML
        if too_large(text):
            raise too_large_error()
    live, known = flow_queries.stored(runtime.db, who.owner_id, flow.id, content_id(flow))
    flow_id, version = runtime.orchestrator.save_flow(text, _file(source), who.owner_id)
    return SavedFlow(id=flow_id, version=version, created=not live, new_version=not known)


# --- routes -------------------------------------------------------------------------------------------------


@router.post(
    "",
    response_model=SavedFlow,
    status_code=201,
    openapi_extra=FLOW_BODY,
    responses={
        200: {"model": SavedFlow, "description": "nothing new: this version of the flow was stored already"},
        **problems(409, 413, 415, 422),
    },
)
def save_flow(
    who: Writer, source: FlowBody, runtime: RuntimeDep, accounts: AccountsDep, response: Response
) -> SavedFlow:
    """Create a flow, or store a new version of yours (saving a deleted flow's id brings it back): 201; saving a
    version stored already (the same content) is 200, and makes it the latest again. Send its YAML, or JSON: the
    FluxGraph document itself (stored as its canonical YAML) or ``{"yaml": "…"}``."""
    saved = _save(runtime, who, source)
    if not (saved.created or saved.new_version):
        response.status_code = 200
    accounts.audit(who, "flow.save", saved.id, {"version": saved.version, "created": saved.created})
    return saved


@router.post("/validate", response_model=Validation, openapi_extra=FLOW_BODY, responses=problems(413, 415, 422))
def validate_flow(_who: Reader, source: FlowBody, runtime: RuntimeDep) -> Validation:
    """Validate a flow without saving it (the same bodies as saving): every issue, located (a flow valid here may
    still be refused if a node type has no executor in this installation; that is reported as the issue
    ``run.refused``)."""
    report = _check(source, runtime.orchestrator.registry)
    issues = [_issue(i) for i in report.issues]
    if report.ok and report.flow is not None:
        try:
            runtime.orchestrator.check_runnable(report.flow, _file(source))
        except IonfluxError as e:
            issues.append(_issue(Issue(e.code, e.message, hint=e.hint)))
    return Validation(valid=not any(i.severity == "error" for i in issues) and report.ok, issues=issues)


@router.get("", response_model=FlowPage, responses=problems(422))
def list_flows(
    who: Reader,
    runtime: RuntimeDep,
    limit: Limit = 50,
    q: Annotated[str | None, Query(max_length=200, description="in the id, name or description")] = None,
    cursor: Cursor = None,
) -> FlowPage:
    """Your flows, by id."""
    found = flow_queries.page(runtime.db, who.owner_id, limit=limit + 1, after=after(cursor, "flows"), q=q)
    items, next_cursor = page(found, limit, lambda f: f.id, "flows")
    return FlowPage(items=[_item(f) for f in items], next_cursor=next_cursor)


@router.post("/import", response_model=ImportReport, openapi_extra=IMPORT_BODY, responses=problems(413, 415, 422))
def import_flows(
    who: Writer, body: Annotated[ImportRequest, Depends(import_body)], runtime: RuntimeDep, accounts: AccountsDep
) -> ImportReport:
    """Save several flows: the valid ones are saved, the others reported with their issues (nothing is all or
    nothing: each flow is its own save)."""
    results: list[ImportResult] = []
    for index, source in enumerate(body.flows):
        try:
            if isinstance(source, str) and too_large(source):
                raise too_large_error()
            if isinstance(source, dict):
                source = document(source, f"body.flows[{index}]")
            saved = _save(runtime, who, source)
        except ApiError as e:  # too large, or a JSON document that could not be kept as YAML
            error = ErrorBody(code=e.code, message=e.message, hint=e.hint, location=e.location)
            results.append(ImportResult(index=index, ok=False, error=error))
            continue
        except FlowValidationError as e:
            error = ErrorBody(code=e.code, message=e.message, hint=e.hint)
            results.append(ImportResult(index=index, ok=False, error=error, issues=[_issue(i) for i in e.issues]))
            continue
        except IonfluxError as e:  # another owner's id, a node type that cannot run here
            results.append(ImportResult(index=index, ok=False, error=ErrorBody(code=e.code, message=e.message)))
            continue
        accounts.audit(who, "flow.save", saved.id, {"version": saved.version, "created": saved.created, "import": True})
        results.append(ImportResult(index=index, ok=True, id=saved.id, version=saved.version, created=saved.created))
    saved_count = sum(r.ok for r in results)
    return ImportReport(saved=saved_count, failed=len(results) - saved_count, results=results)


@router.get("/{flow_id}", response_model=FlowDetail, responses=problems(404, 422))
def show_flow(flow_id: FlowIdPath, who: Reader, runtime: RuntimeDep, request: Request) -> FlowDetail:
    """A flow: its latest version's YAML, declared and armed triggers (webhook URLs), and a cost forecast."""
    record = _owned(runtime, who, flow_id)
    flow = _latest(runtime, record)
    forecast = flow_forecast(flow, runtime.orchestrator.registry)
    return FlowDetail(
        **_item(record).model_dump(),
        tags=list(flow.tags),
        yaml=record.source,
        declared_triggers=[
            DeclaredTrigger(position=i, type=t.type, config=t.model_dump(mode="json", exclude_none=True))
            for i, t in enumerate(flow.triggers)
        ],
        armed_triggers=[_armed(t, request) for t in runtime.triggers.armed(flow_id)],
        forecast=Forecast(
            fixed_cion=forecast.fixed_cion,
            per_item_cion=forecast.per_item_cion,
            nodes=[
                ForecastNode(
                    node_id=n.node_id, type=n.type, cion=n.estimate.cion, basis=n.estimate.basis, per_item=n.per_item
                )
                for n in forecast.nodes
            ],
        ),
    )


@router.get("/{flow_id}/versions", response_model=VersionPage, responses=problems(404, 422))
def list_versions(
    flow_id: FlowIdPath,
    who: Reader,
    runtime: RuntimeDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> VersionPage:
    """The flow's stored versions, newest first."""
    record = _owned(runtime, who, flow_id)
    found = flow_queries.versions(runtime.db, flow_id, limit=limit + 1, before=after(cursor, f"versions/{flow_id}"))
    items, next_cursor = page(found, limit, lambda v: v.id, f"versions/{flow_id}")
    return VersionPage(
        items=[
            VersionOut(
                id=v.id,
                created_at=v.created_at,
                latest=v.id == record.latest_version,
                active=v.id == record.active_version,
            )
            for v in items
        ],
        next_cursor=next_cursor,
    )


@router.get("/{flow_id}/versions/{version}", response_model=VersionDetail, responses=problems(404, 422))
def show_version(flow_id: FlowIdPath, version: VersionPath, who: Reader, runtime: RuntimeDep) -> VersionDetail:
    """One version's YAML, as it was submitted."""
    record = _owned(runtime, who, flow_id)
    found = _version(runtime, record, version)
    return VersionDetail(
        id=found.id,
        flow_id=found.flow_id,
        created_at=found.created_at,
        latest=found.id == record.latest_version,
        active=found.id == record.active_version,
        yaml=found.source,
    )


@router.get("/{flow_id}/diff", response_model=FlowDiffOut, responses=problems(404, 422))
def diff_versions(
    flow_id: FlowIdPath,
    who: Reader,
    runtime: RuntimeDep,
    from_: Annotated[str, Query(alias="from", min_length=1, max_length=80, description="the older version")],
    to: Annotated[str | None, Query(min_length=1, max_length=80, description="default: the latest version")] = None,
) -> FlowDiffOut:
    """What changed between two versions: nodes and edges (structural), and the YAML lines (text)."""
    record = _owned(runtime, who, flow_id)
    old = _version(runtime, record, from_)
    new = _version(runtime, record, to or record.latest_version or "")
    registry = runtime.orchestrator.registry
    structural = flow_diff(
        load_flow(old.source, old.id, registry=registry), load_flow(new.source, new.id, registry=registry)
    )
    text = difflib.unified_diff(
        old.source.splitlines(keepends=True), new.source.splitlines(keepends=True), old.id, new.id
    )
    return FlowDiffOut(
        from_version=old.id,
        to_version=new.id,
        structural=StructuralDiff.model_validate(structural.to_dict()),
        text="".join(text),
    )


@router.post("/{flow_id}/activate", response_model=Activation, responses=problems(404, 422))
def activate(
    flow_id: FlowIdPath,
    who: Writer,
    runtime: RuntimeDep,
    accounts: AccountsDep,
    request: Request,
    body: Activate | None = None,
) -> Activation:
    """Arm a version's triggers (default: the latest) and disarm the others', as `ionflux activate` does; a
    webhook keeps its URL across versions."""
    record = _owned(runtime, who, flow_id)
    version = _version(runtime, record, (body.version if body else None) or record.latest_version or "").id
    armed = runtime.triggers.activate(flow_id, version)
    accounts.audit(who, "flow.activate", flow_id, {"version": version, "armed": len(armed)})
    return Activation(id=flow_id, active_version=version, armed_triggers=[_armed(t, request) for t in armed])


@router.post("/{flow_id}/deactivate", response_model=Activation, responses=problems(404, 422))
def deactivate(flow_id: FlowIdPath, who: Writer, runtime: RuntimeDep, accounts: AccountsDep) -> Activation:
    """Disarm the flow's triggers (its webhook URLs answer 404; manual runs still work)."""
    record = _owned(runtime, who, flow_id)
    runtime.triggers.deactivate(flow_id)
    accounts.audit(who, "flow.deactivate", flow_id, {"version": record.active_version})
    return Activation(id=flow_id, active_version=None, armed_triggers=[])


@router.delete("/{flow_id}", status_code=204, response_class=Response, responses=problems(404, 422))
def delete_flow(flow_id: FlowIdPath, who: Admin, runtime: RuntimeDep, accounts: AccountsDep) -> Response:
    """Delete a flow (softly): it leaves listings and lookups and its triggers are disarmed; its runs and versions
    stay. Saving a flow with the same id brings it back."""
    if not flow_queries.soft_delete(runtime.db, who.owner_id, flow_id):
        raise ApiError(404, "flow.not_found", f"no flow {flow_id!r} of yours", hint="GET /api/v1/flows lists them")
    accounts.audit(who, "flow.delete", flow_id)
    return Response(status_code=204)


#: what the exported YAML parses to (a client reading application/yaml gets the document, not a string)
EXPORTED: dict[str, Any] = {
    "type": "object",
    "description": "a FluxGraph document (`ionflux schema` prints its schema)",
}


@router.get(
    "/{flow_id}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/yaml": {"schema": EXPORTED}}, "description": "the flow's YAML"},
        **problems(404, 422),
    },
)
def export_flow(flow_id: FlowIdPath, who: Reader, runtime: RuntimeDep, version: VersionQuery = None) -> Response:
    """The YAML of the latest version (or ``version``), as a file to download."""
    record = _owned(runtime, who, flow_id)
    found = _version(runtime, record, version or record.latest_version or "")
    disposition = f'attachment; filename="{flow_id}.yaml"'
    return Response(found.source, media_type="application/yaml", headers={"Content-Disposition": disposition})
