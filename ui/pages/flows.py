"""The Flows screens: ``/ui/flows`` (the visitor's flows, searchable) and ``/ui/flows/{id}`` (the graph, the YAML,
versions with a diff between any two, triggers with their webhook URL, next cron fires and event subjects, and
activate / deactivate).

Everything is read through the engine's owner-scoped queries (engine.runtime.flow_queries): another owner's flow
is simply not found (a 404 page), as in the API. Activation arms triggers through the runtime's ``Triggers``,
the same call ``POST /api/v1/flows/{id}/activate`` makes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup

from engine.dsl import schedule
from engine.dsl.diff import FlowDiff, diff
from engine.dsl.model import CronTrigger, EventTrigger, Flow, WebhookTrigger
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.runtime import flow_queries
from engine.runtime.flow_queries import FlowRecord, VersionRecord
from engine.runtime.runtime import Runtime
from ui.graph import render
from ui.rendering import page
from ui.visitor import Visitor, audit, check_csrf, visitor

router = APIRouter(prefix="/ui/flows", include_in_schema=False)

LISTED = 200  # flows on the list page (search narrows it)
VERSIONS = 50  # versions listed on a flow's page
CRON_FIRES = 3  # next fire times shown per cron trigger

Who = Annotated[Visitor, Depends(visitor)]


@dataclass(frozen=True)
class TriggerView:
    """One declared trigger of the shown version, with what is armed for it."""

    position: int
    kind: str
    enabled: bool
    armed: bool
    url: str | None = None  # a webhook's, while armed
    cron: str | None = None
    timezone: str | None = None
    fires: tuple[tuple[str, str], ...] = ()  # (ISO instant, wall-clock text in the trigger's zone)
    subject: str | None = None


@dataclass(frozen=True)
class DiffView:
    old: str
    new: str
    structural: FlowDiff | None
    lines: tuple[tuple[str, str], ...]  # (css class, text) of the unified diff


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _owned(request: Request, who: Visitor, flow_id: str) -> FlowRecord | None:
    """The visitor's live flow (None: unknown, another owner's, deleted, or never saved with a version)."""
    found = flow_queries.get(_runtime(request).db, who.owner_id, flow_id)
    return found if found is not None and found.latest_version is not None else None


def _missing(request: Request, who: Visitor, flow_id: str) -> HTMLResponse:
    return page(request, "flows_missing.html", who, {"flow_id": flow_id}, status=404)


def _flow(request: Request, version: str) -> Flow:
    return _runtime(request).orchestrator.plan(version).flow


def _fires(cron: str, timezone: str, now: datetime) -> tuple[tuple[str, str], ...]:
    zone, found, after = ZoneInfo(timezone), [], now
    for _ in range(CRON_FIRES):
        at = schedule.next_fire(cron, timezone, after)
        if at is None:
            break
        found.append((at.isoformat(), at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")))
        after = at
    return tuple(found)


def _triggers(request: Request, record: FlowRecord) -> tuple[str, list[TriggerView]]:
    """The shown version (the active one, else the latest) and its triggers, with what is armed."""
    shown = record.active_version or record.latest_version or ""
    armed = {t.position: t for t in _runtime(request).triggers.armed(record.id) if t.version_id == shown}
    base = str(request.base_url).rstrip("/")
    now = datetime.now(UTC)
    views = []
    for position, trigger in enumerate(_flow(request, shown).triggers):
        live = armed.get(position)
        extra: dict[str, Any] = {}
        if isinstance(trigger, WebhookTrigger) and live is not None and live.token:
            extra["url"] = f"{base}/hooks/{live.token}"
        elif isinstance(trigger, CronTrigger):
            extra = {"cron": trigger.cron, "timezone": trigger.timezone}
            extra["fires"] = _fires(trigger.cron, trigger.timezone, now)
        elif isinstance(trigger, EventTrigger):
            extra["subject"] = trigger.subject
        views.append(TriggerView(position, trigger.type, trigger.enabled, live is not None, **extra))
    return shown, views


def _diff(request: Request, record: FlowRecord, old_id: str, new_id: str) -> DiffView | None:
    db = _runtime(request).db
    old, new = flow_queries.version(db, record.id, old_id), flow_queries.version(db, record.id, new_id)
    if old is None or new is None:
        return None
    registry = _runtime(request).orchestrator.registry
    try:
        structural: FlowDiff | None = diff(
            load_flow(old.source, old.id, registry=registry), load_flow(new.source, new.id, registry=registry)
        )
    except IonfluxError:  # a version stored before a rule it breaks existed: the text diff still says what changed
        structural = None
    text = difflib.unified_diff(old.source.splitlines(), new.source.splitlines(), old.id, new.id, lineterm="")
    return DiffView(old.id, new.id, structural, tuple((_line_class(line), line) for line in text))


def _line_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "file"
    return {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")


def _default_pair(versions: list[VersionRecord]) -> tuple[str, str] | None:
    return (versions[1].id, versions[0].id) if len(versions) > 1 else None


# --- routes -------------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def flows(request: Request, who: Who, q: str = "") -> HTMLResponse:
    """The visitor's flows; an htmx request (the search box) gets just the list."""
    query = q.strip()[:200]
    records = flow_queries.page(_runtime(request).db, who.owner_id, limit=LISTED, q=query or None)
    context = {"flows": records, "q": query, "limited": len(records) == LISTED}
    return page(request, "flows_list.html" if _htmx(request) else "flows.html", who, context)


@router.get("/{flow_id}", response_class=HTMLResponse)
def flow_page(
    request: Request,
    flow_id: str,
    who: Who,
) -> HTMLResponse:
    """A flow: graph, YAML, versions and a diff (``from``, ``to``: two version ids; default the last change),
    triggers."""
    record = _owned(request, who, flow_id)
    if record is None or record.latest_version is None:
        return _missing(request, who, flow_id)
    latest = _flow(request, record.latest_version)
    versions = flow_queries.versions(_runtime(request).db, flow_id, limit=VERSIONS)
    chosen = (request.query_params.get("from"), request.query_params.get("to"))
    pair = (chosen[0], chosen[1]) if chosen[0] and chosen[1] else _default_pair(versions)
    shown, triggers = _triggers(request, record)
    context = {
        "flow": record,
        "model": latest,
        "graph": Markup(render(latest)),  # ui.graph escapes every name and text it draws
        "versions": versions,
        "diff": _diff(request, record, *pair) if pair else None,
        "shown": shown,
        "triggers": triggers,
    }
    return page(request, "flows_detail.html", who, context)


@router.get("/{flow_id}/diff", response_class=HTMLResponse, response_model=None)
def flow_diff(request: Request, flow_id: str, who: Who) -> Response:
    """The diff between two versions (``from``, ``to``): a fragment for htmx, else the flow page showing it."""
    old, new = request.query_params.get("from", ""), request.query_params.get("to", "")
    if not _htmx(request):
        return RedirectResponse(f"/ui/flows/{flow_id}?{urlencode({'from': old, 'to': new})}#diff", status_code=303)
    record = _owned(request, who, flow_id)
    if record is None:
        return _missing(request, who, flow_id)
    versions = flow_queries.versions(_runtime(request).db, flow_id, limit=VERSIONS)
    context = {"flow": record, "versions": versions, "diff": _diff(request, record, old, new)}
    return page(request, "flows_diff.html", who, context)


def _change(request: Request, flow_id: str, who: Visitor, csrf: str | None, activate: bool) -> Response:
    check_csrf(request, who, csrf)
    if not who.may("write"):
        raise HTTPException(403, "activating a flow needs the write scope")
    record = _owned(request, who, flow_id)
    if record is None or record.latest_version is None:
        return _missing(request, who, flow_id)
    triggers = _runtime(request).triggers
    if activate:
        triggers.activate(flow_id, record.latest_version)
        audit(request, who, "flow.activate", flow_id, {"version": record.latest_version})
    else:
        triggers.deactivate(flow_id)
        audit(request, who, "flow.deactivate", flow_id)
    if not _htmx(request):
        return RedirectResponse(f"/ui/flows/{flow_id}#triggers", status_code=303)
    record = _owned(request, who, flow_id) or record
    shown, views = _triggers(request, record)
    return page(request, "flows_triggers.html", who, {"flow": record, "shown": shown, "triggers": views})


@router.post("/{flow_id}/activate", response_model=None)
def activate(request: Request, flow_id: str, who: Who, csrf: Annotated[str | None, Form()] = None) -> Response:
    """Arm the latest version's triggers (and disarm the others')."""
    return _change(request, flow_id, who, csrf, activate=True)


@router.post("/{flow_id}/deactivate", response_model=None)
def deactivate(request: Request, flow_id: str, who: Who, csrf: Annotated[str | None, Form()] = None) -> Response:
    """Disarm the flow's triggers (its webhook URLs stop answering)."""
    return _change(request, flow_id, who, csrf, activate=False)
