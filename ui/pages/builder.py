"""The Builder: a chat with Jules next to the draft's graph (with its YAML and cost forecast), and the draft's
proposals to accept or reject; an accepted draft is saved and run from the run form.

- ``GET /ui/builder`` starts a session (from ``?flow=ID`` if given) and redirects to ``?session=ID``, the page.
- ``POST /ui/builder/{session}/messages`` is a turn. Asked by htmx 4 with its SSE extension (``Accept`` names
  ``text/event-stream``), the answer is a stream of HTML messages: the user's message and an empty reply first,
  then each piece of the reply as ``<hx-partial>``s appended to it as Jules writes, then the whole reply with its
  proposal (summary, coloured diff, Accept / Reject) and the graph pane re-rendered with the proposal. Without
  that header, the same HTML comes whole in one answer.
- ``POST /ui/builder/{session}/changes/{change}/accept|reject`` decide; ``POST /ui/builder/{session}/save`` stores
  the draft as a flow and sends the browser (``HX-Redirect``) to its run form.

Jules is reached through ``ui.jules`` (the composition root's ``app.state.ui_jules``): the UI does not import
the co-pilot. Another owner's session is not found (404 page); changes need the write scope and the CSRF token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from engine.dsl.issue import FlowValidationError, Issue
from engine.dsl.source import parse_yaml
from engine.dsl.validator import load_flow
from engine.errors import IonfluxError
from engine.runtime.runtime import Runtime
from ui import graph, node_form
from ui.copilot_budget import wait_seconds
from ui.jules import BuilderJules, Conversation, NotFound, Reply, jules
from ui.rendering import page, templates
from ui.visitor import Visitor, audit, check_csrf, visitor

log = logging.getLogger("ionflux.ui")
router = APIRouter(prefix="/ui/builder", include_in_schema=False)

Who = Annotated[Visitor, Depends(visitor)]
Jules = Annotated[BuilderJules, Depends(jules)]
Id = Annotated[str, Query(max_length=64)]
SUGGESTION = (
    "Every weekday at 8:30 Lisbon time, fetch https://example.com/api/orders and post a summary to #sales on Slack"
)
EDIT_SUGGESTION = "Run it every weekday at 9:00 Lisbon time"  # for a session that starts with a draft
MAX_MESSAGE = 4000
MAX_YAML = 256 * 1024  # a flow written by hand in the YAML tab
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "diff-file"
    return {"+": "diff-add", "-": "diff-del", "@": "diff-hunk"}.get(line[:1], "diff-same")


templates.env.filters["builder_diff_class"] = _diff_class


@dataclass(frozen=True)
class Problem:
    """One located problem of the YAML tab's text, as the page lists it."""

    severity: str
    line: int | None
    column: int | None
    node_id: str | None
    field: str
    message: str
    hint: str

    @classmethod
    def of(cls, issue: Issue) -> Problem:
        where = issue.location
        return cls(
            issue.severity,
            where.line or None,
            where.column or None,
            issue.node_id,
            issue.dotted_path,
            issue.message,
            issue.hint,
        )


# --- the page -------------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse, response_model=None)
def builder(
    request: Request, who: Who, jules: Jules, session: Id = "", flow: Id = "", demo: bool = False
) -> HTMLResponse | RedirectResponse:
    if not session:
        if not who.may("write"):
            return page(request, "builder_missing.html", who, {"why": "read-only"}, status=403)
        try:
            started = jules.start(owner=who.owner_id, user=who.name, flow_id=flow or None, demo=demo)
        except NotFound:
            return page(request, "builder_missing.html", who, {"flow_id": flow}, status=404)
        return RedirectResponse(f"/ui/builder?session={started}", status_code=303)
    try:
        current = jules.session(session, owner=who.owner_id)
    except NotFound:
        return page(request, "builder_missing.html", who, {"session_id": session}, status=404)
    suggestion = EDIT_SUGGESTION if current.draft else SUGGESTION
    context = {"s": current, "suggestion": suggestion, **_pane(request, jules, current, who)}
    return page(request, "builder.html", who, context)


def _pane(request: Request, jules: BuilderJules, s: Conversation, who: Visitor) -> dict[str, Any]:
    """What the right-hand pane shows: the pending proposal's flow (marked proposed), else the draft."""
    pending = s.pending
    source = pending.after if pending else s.draft
    svg, problem = "", ""
    if source:
        runtime: Runtime = request.app.state.runtime
        try:
            svg = graph.render(load_flow(source, "<draft>", registry=runtime.orchestrator.registry))
        except (FlowValidationError, IonfluxError) as e:
            problem = str(e)
    return {
        "s": s,
        "source": source,
        "proposed": pending is not None,
        "svg": svg,
        "problem": problem,
        "cost": jules.forecast(source) if source else "",
        "can_save": bool(s.draft) and pending is None,
        "can_edit": bool(s.draft) and pending is None and who.may("write"),
    }


def _render(name: str, **context: Any) -> str:
    return templates.get_template(name).render(**context)


def _refused(status: int, message: str) -> HTMLResponse:
    return HTMLResponse(f'<p class="refusal" role="alert">{_escape(message)}</p>', status_code=status)


def _escape(text: str) -> str:
    return templates.env.filters["e"](text)  # type: ignore[no-any-return]


# --- a turn ---------------------------------------------------------------------------------------------------


@router.post("/{session_id}/messages", response_model=None)
async def say(
    request: Request,
    session_id: str,
    who: Who,
    jules: Jules,
    text: Annotated[str, Form(max_length=MAX_MESSAGE)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, who, csrf or None)
    if not who.may("write"):
        return _refused(403, "your access is read-only: you cannot talk to Jules")
    try:
        await run_in_threadpool(jules.session, session_id, owner=who.owner_id)
    except NotFound:
        return _refused(404, f"you have no Builder session {session_id!r}")
    if not text.strip():
        return _refused(422, "say what to automate, or what to change in the draft")
    seconds = wait_seconds(request, who.owner_id)
    if seconds:
        answer = _refused(429, f"too many messages to Jules this minute: try again in {seconds} s")
        answer.headers["Retry-After"] = str(seconds)
        return answer
    turn = secrets.token_hex(4)
    if "text/event-stream" in request.headers.get("accept", ""):
        stream = _stream(request, jules, who, session_id, text, turn)
        return EventSourceResponse(stream, ping=15, headers=SSE_HEADERS)
    try:
        reply = await run_in_threadpool(jules.say, session_id, text, owner=who.owner_id, user=who.name)
    except IonfluxError as e:
        return HTMLResponse(_render("builder_turn.html", turn=turn, text=text, error=e.message))
    if not request.headers.get("hx-request"):  # a plain form (no JavaScript): the page again, with the turn
        return RedirectResponse(f"/ui/builder?session={quote(session_id)}", status_code=303)
    html = _render("builder_turn.html", turn=turn, text=text, reply=reply)
    return HTMLResponse(html + _after_turn(request, jules, who, session_id, reply))


def _after_turn(request: Request, jules: BuilderJules, who: Visitor, session_id: str, reply: Reply) -> str:
    """The partials a finished turn sends: the proposal next to the chat, the pane, an empty message box."""
    current = jules.session(session_id, owner=who.owner_id)
    return _render(
        "builder_after.html",
        s=current,
        clear=True,
        change=reply.change if reply.change and reply.change.status == "pending" else None,
        **{k: v for k, v in _pane(request, jules, current, who).items() if k != "s"},
    )


async def _stream(
    request: Request, jules: BuilderJules, who: Visitor, session_id: str, text: str, turn: str
) -> AsyncIterator[ServerSentEvent]:
    """Jules.say in a worker thread; its listener feeds this stream through a queue, in order (as the API does)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (the server stopped): the turn is still recorded
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def work() -> None:
        try:
            put("reply", jules.say(session_id, text, owner=who.owner_id, user=who.name, listen=put))
        except IonfluxError as e:
            put("error", e.message)
        except Exception:
            log.exception("Jules failed in Builder session %s", session_id)
            put("error", "Jules failed; it is in the server's log")

    yield ServerSentEvent(data=_render("builder_turn.html", turn=turn, text=text, streaming=True))
    worker = loop.run_in_executor(None, work)
    while True:
        kind, value = await queue.get()
        if kind == "reply":
            whole = _render("builder_turn.html", turn=turn, text=text, reply=value, partial=True)
            after = await run_in_threadpool(_after_turn, request, jules, who, session_id, value)
            yield ServerSentEvent(data=whole + after)
            break
        if kind == "error":
            yield ServerSentEvent(data=_render("builder_turn.html", turn=turn, text=text, error=value, partial=True))
            break
        target = "reply" if kind == "token" else "status"
        swap = "beforeend" if kind == "token" else "innerHTML"
        piece = f'<hx-partial hx-target="#{target}-{turn}" hx-swap="{swap}">{_escape(value)}</hx-partial>'
        yield ServerSentEvent(data=piece)
    await worker


# --- decisions ------------------------------------------------------------------------------------------------


@router.post("/{session_id}/changes/{change_id}/{decision}", response_model=None)
def decide(
    request: Request,
    session_id: str,
    change_id: str,
    decision: str,
    who: Who,
    jules: Jules,
    csrf: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, who, csrf or None)
    if decision not in ("accept", "reject"):
        return _refused(404, f"there is no decision {decision!r}")
    if not who.may("write"):
        return _refused(403, "your access is read-only: you cannot change the draft")
    act = jules.accept if decision == "accept" else jules.reject
    try:
        act(session_id, change_id, owner=who.owner_id, user=who.name)
    except NotFound:
        return _refused(404, f"you have no Builder session {session_id!r} with a change {change_id!r}")
    except IonfluxError as e:
        return _refused(409, e.message)
    current = jules.session(session_id, owner=who.owner_id)
    detail: dict[str, object] = {"session": session_id}
    decided = next((c for c in current.changes if c.id == change_id), None)
    if decision == "accept" and decided is not None:  # what was accepted, in the log itself (as the API's)
        detail |= {"summary": list(decided.summary), "diff": decided.diff[:20_000]}
    audit(request, who, f"copilot.{decision}", change_id, detail)
    html = _render("builder_decided.html", decision=decision, s=current)
    return HTMLResponse(html + _render("builder_after.html", change=None, **_pane(request, jules, current, who)))


@router.post("/{session_id}/save", response_model=None)
def save(request: Request, session_id: str, who: Who, jules: Jules, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, who, csrf or None)
    if not who.may("write"):
        return _refused(403, "your access is read-only: you cannot save flows")
    try:
        flow_id, version = jules.save(session_id, owner=who.owner_id, user=who.name)
    except NotFound:
        return _refused(404, f"you have no Builder session {session_id!r}")
    except (IonfluxError, FlowValidationError) as e:
        return _refused(409, str(getattr(e, "message", e)))
    audit(request, who, "copilot.save", flow_id, {"session": session_id, "version": version})
    target = f"/ui/runs/new?flow={quote(flow_id)}"
    if request.headers.get("hx-request"):  # htmx follows HX-Redirect (a 303 would be followed by fetch, unseen)
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


# --- editing by hand: the YAML, a node's panel ---------------------------------------------------------------


def _problems(request: Request, text: str) -> list[Problem]:
    """Every problem of a YAML text as a flow, located (line, column, node, field), errors first."""
    runtime: Runtime = request.app.state.runtime
    try:
        load_flow(text, "draft.yaml", registry=runtime.orchestrator.registry)
    except FlowValidationError as e:
        issues = sorted(e.issues, key=lambda i: (i.severity != "error", i.sort_key()))
        return [Problem.of(issue) for issue in issues]
    except IonfluxError as e:
        return [Problem("error", None, None, None, "", e.message, e.hint)]
    return []


@router.post("/{session_id}/check", response_class=HTMLResponse)
def check_yaml(
    request: Request, session_id: str, who: Who, yaml: Annotated[str, Form(max_length=MAX_YAML)] = ""
) -> HTMLResponse:
    """The YAML tab's inline validation, as the user types: the located problems (nothing is saved)."""
    return HTMLResponse(_render("builder_problems.html", problems=_problems(request, yaml), checked=True))


@router.post("/{session_id}/draft", response_model=None)
def write_draft(
    request: Request,
    session_id: str,
    who: Who,
    jules: Jules,
    yaml: Annotated[str, Form(max_length=MAX_YAML)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """The YAML tab's Apply: the user's YAML becomes the draft (recorded as their change), or its problems show."""
    check_csrf(request, who, csrf or None)
    if not who.may("write"):
        return _refused(403, "your access is read-only: you cannot change the draft")
    problems = _problems(request, yaml)
    if any(p.severity == "error" for p in problems):
        body = _render("builder_problems.html", problems=problems, checked=True, partial=True)
        return HTMLResponse(body, status_code=422)
    try:
        jules.write(session_id, yaml, owner=who.owner_id, user=who.name)
    except NotFound:
        return _refused(404, f"you have no Builder session {session_id!r}")
    except IonfluxError as e:
        error = Problem("error", None, None, None, "", e.message, e.hint)
        return HTMLResponse(_render("builder_problems.html", problems=[error], partial=True), status_code=409)
    audit(request, who, "copilot.edit", session_id, {"by": "yaml"})
    return _after_edit(request, jules, who, session_id, "The draft is now your YAML.")


def _after_edit(request: Request, jules: BuilderJules, who: Visitor, session_id: str, said: str) -> HTMLResponse:
    """The pane drawn again after a hand edit, saying what changed (the node panel closes with it)."""
    current = jules.session(session_id, owner=who.owner_id)
    context = {**_pane(request, jules, current, who), "message": said}
    return HTMLResponse(_render("builder_after.html", change=None, **context))


def _node_view(request: Request, jules: BuilderJules, who: Visitor, session_id: str, node_id: str) -> dict[str, Any]:
    """The panel's context for a node of the session's draft (or a NotFound)."""
    current = jules.session(session_id, owner=who.owner_id)
    doc = parse_yaml(current.draft, "draft.yaml").data if current.draft else {}
    node = node_form.find_node(doc if isinstance(doc, dict) else {}, node_id)
    if node is None:
        raise NotFound(f"the draft has no node {node_id!r}")
    runtime: Runtime = request.app.state.runtime
    registry = runtime.orchestrator.registry
    kind = registry.get(str(node.get("type"))) if str(node.get("type")) in registry else None
    values: dict[str, Any] = node["with"] if isinstance(node.get("with"), dict) else {}
    permissions: dict[str, Any] = node["permissions"] if isinstance(node.get("permissions"), dict) else {}
    return {
        "s": current,
        "node": node,
        "kind": kind,
        "with_fields": node_form.with_fields(kind, values),
        "common": node_form.common_fields(node),
        "permissions": permissions,
        "can_edit": who.may("write") and current.pending is None,
    }


@router.get("/{session_id}/nodes/{node_id}", response_class=HTMLResponse)
def node_panel(request: Request, session_id: str, node_id: str, who: Who, jules: Jules) -> HTMLResponse:
    """A node's panel: its type, its parameters as a form from the type's schema, permissions, retry, timeout."""
    try:
        view = _node_view(request, jules, who, session_id, node_id)
    except NotFound as e:
        return _refused(404, str(e))
    return HTMLResponse(_render("builder_node.html", visitor=who, **view))


@router.post("/{session_id}/nodes/{node_id}", response_model=None)
async def update_node(request: Request, session_id: str, node_id: str, who: Who, jules: Jules) -> Response:
    """The panel's Apply: the changed fields go into the draft (recorded as the user's change)."""
    form = await request.form()
    posted = {k: v for k, v in form.items() if isinstance(v, str)}
    check_csrf(request, who, posted.get("csrf") or None)
    if not who.may("write"):
        return _refused(403, "your access is read-only: you cannot change the draft")
    try:
        view = await run_in_threadpool(_node_view, request, jules, who, session_id, node_id)
        to_set, to_unset = node_form.changes([*view["with_fields"], *view["common"]], posted)
    except NotFound as e:
        return _refused(404, str(e))
    except node_form.FormError as e:
        return _panel_again(view, who, f"{e.field}: {e.message}", e.field)
    if not to_set and not to_unset:
        return _panel_again(view, who, "nothing changed: edit a field first", None, status=200)
    try:
        await run_in_threadpool(
            partial(jules.update_node, owner=who.owner_id, user=who.name),
            session_id,
            node_id,
            to_set,
            to_unset,
        )
    except NotFound as e:
        return _refused(404, str(e))
    except IonfluxError as e:
        return _panel_again(view, who, e.message, None)
    audit(request, who, "copilot.edit", session_id, {"by": "panel", "node": node_id})
    said = f"Node {node_id} changed: " + ", ".join([*to_set, *(f"{p} removed" for p in to_unset)]) + "."
    return await run_in_threadpool(_after_edit, request, jules, who, session_id, said)


def _panel_again(view: dict[str, Any], who: Visitor, error: str, field: str | None, status: int = 422) -> HTMLResponse:
    html = _render("builder_node.html", visitor=who, error=error, error_field=field, **view)
    return HTMLResponse(html, status_code=status)
