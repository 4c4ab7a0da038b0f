"""Running a flow from the UI: a form made from the flow's ``inputs`` schema (a text box per string, a number box
per number, a checkbox per boolean, a list per enum, a JSON box for anything else), checked by the engine as the
API checks it; a refusal shows next to the form what is wrong and where, a run opens its live page."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from engine.dsl.inputs import RunInputError
from engine.dsl.issue import FlowValidationError
from engine.dsl.model import Flow
from engine.errors import IonfluxError
from engine.runtime import flow_queries
from engine.runtime.runtime import Runtime
from ui.rendering import page
from ui.visitor import Visitor, audit, check_csrf, visitor

# registered before ui.pages.runs (modules are mounted in name order), so /ui/runs/new is not taken for a run id
router = APIRouter(prefix="/ui/runs", include_in_schema=False)
Who = Annotated[Visitor, Depends(visitor)]


def fields(flow: Flow) -> list[dict[str, Any]]:
    """The form's fields from the flow's ``inputs`` schema (top-level properties, in their order)."""
    schema = dict(flow.inputs or {})
    required = set(schema.get("required") or [])
    out = []
    for name, sub in (schema.get("properties") or {}).items():
        kind = sub.get("type")
        widget = (
            "select"
            if "enum" in sub
            else {"string": "text", "integer": "number", "number": "number", "boolean": "checkbox"}.get(
                kind if isinstance(kind, str) else "", "json"
            )
        )
        out.append(
            {
                "name": name,
                "widget": widget,
                "kind": kind,
                "required": name in required,
                "description": sub.get("description") or sub.get("title") or "",
                "default": sub.get("default"),
                "choices": list(sub.get("enum") or []),
                "step": "1" if kind == "integer" else "any",
            }
        )
    return out


def _flow(request: Request, who: Visitor, flow_id: str) -> tuple[Runtime, Flow, str] | None:
    runtime: Runtime = request.app.state.runtime
    record = flow_queries.get(runtime.db, who.owner_id, flow_id)
    if record is None or record.latest_version is None:
        return None
    try:
        flow = runtime.orchestrator.plan(record.latest_version).flow
    except (IonfluxError, FlowValidationError):
        return None
    return runtime, flow, record.latest_version


@router.get("/new", response_class=HTMLResponse)
def run_form(request: Request, who: Who, flow: Annotated[str, Query(max_length=64)]) -> HTMLResponse:
    found = _flow(request, who, flow)
    if found is None:
        return page(request, "flows_missing.html", who, {"flow_id": flow}, status=404)
    _, loaded, _ = found
    context = {"flow": loaded, "fields": fields(loaded), "values": {}, "problems": [], "free_json": not fields(loaded)}
    return page(request, "run_form.html", who, context)


@router.post("/new", response_model=None)
async def start(request: Request, who: Who, flow: Annotated[str, Query(max_length=64)]) -> Response:
    form = await request.form()
    check_csrf(request, who, str(form.get("csrf") or "") or None)
    found = _flow(request, who, flow)
    if found is None:
        return page(request, "flows_missing.html", who, {"flow_id": flow}, status=404)
    runtime, loaded, version = found
    if not who.may("write"):
        return _again(request, who, loaded, form, [("", "starting a run needs the write scope")], 403)
    value, problems = _read(loaded, form)
    if not problems:
        try:
            run_id = runtime.orchestrator.start_run(version, value, trigger_kind="manual", trigger={"kind": "ui"})
        except RunInputError as e:
            problems = [(where, why) for where, why in getattr(e, "problems", [])] or [("", e.message)]
        except IonfluxError as e:
            problems = [("", f"{e.message} [{e.code}]")]
        else:
            audit(request, who, "run.start", run_id, {"flow": loaded.id})
            target = f"/ui/runs/{run_id}"
            if request.headers.get("hx-request"):  # htmx navigates on HX-Redirect; a 303 it would follow and swap
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
    return _again(request, who, loaded, form, problems, 422)


def _read(flow: Flow, form: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The input from the form's fields (typed as the schema says); a JSON box's text must parse."""
    if not fields(flow):
        text = str(form.get("input_json") or "").strip() or "{}"
        try:
            loaded = json.loads(text)
        except ValueError as e:
            return {}, [("input", f"not JSON: {e}")]
        return (loaded, []) if isinstance(loaded, dict) else ({}, [("input", "must be a JSON object")])
    value: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for field in fields(flow):
        name, raw = field["name"], form.get(field["name"])
        if field["widget"] == "checkbox":
            value[name] = raw is not None
            continue
        text = str(raw or "").strip()
        if not text:
            continue  # left out: the schema's default, or a "required" refusal from the engine
        try:
            value[name] = _typed(field, text)
        except ValueError as e:
            problems.append((f"inputs.{name}", str(e)))
    return value, problems


def _typed(field: dict[str, Any], text: str) -> Any:
    if field["widget"] == "json":
        return json.loads(text)
    if field["kind"] == "integer":
        return int(text)
    if field["kind"] == "number":
        return float(text)
    if field["widget"] == "select" and field["choices"] and not isinstance(field["choices"][0], str):
        return json.loads(text)
    return text


def _again(
    request: Request, who: Visitor, flow: Flow, form: Any, problems: list[tuple[str, str]], status: int
) -> HTMLResponse:
    values = {k: str(v) for k, v in form.items() if k != "csrf"}
    context = {"flow": flow, "fields": fields(flow), "values": values, "problems": problems}
    context["free_json"] = not context["fields"]
    return page(request, "run_form.html", who, context, status=status)
