"""The Runs screens: a live list of the visitor's runs and a run's page (its graph coloured by step status, its
steps, its actions), kept live by Server-Sent Events that carry HTML.

- ``GET /ui/runs`` lists the runs, newest first (filters: status, flow); ``/ui/runs/live`` re-renders the rows
  whenever one of the visitor's runs records an event (the owner's feed; its cursor is the SSE id).
- ``GET /ui/runs/{id}`` is a run's page; ``/ui/runs/{id}/live`` sends one message per recorded event (id: the
  run's seq, so htmx's reconnect with ``Last-Event-ID`` resumes with nothing lost or repeated): an activity line,
  and with the newest event of each read out-of-band swaps of the run's state (head, graph, steps, actions).
  It ends with a ``done`` event once the run has finished.
- ``POST /ui/runs/{id}/{cancel|pause|resume|approve|reject|rerun}`` act on the run and answer an HTML message
  (the run's state reaches the page through its stream only: one ordered writer, never a stale one); a refusal
  is a readable sentence with its code (409), never a stack trace.
- ``POST /ui/runs/{id}/heal`` ("Ask Jules to fix", on a failed run) answers Jules's diagnosis, the fix as a diff and
  its proof by replay (``ui.healer``); ``POST /ui/runs/{id}/heal/apply`` resumes the run with that fix (or as it
  is). A re-run or a resume from the page follows the run again from the event its first stream ended on.

Another owner's run is not found (404 page). Read-scope visitors see no action buttons (and are refused, 403).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from engine.core.state import StepKey, StepStatus
from engine.errors import IonfluxError
from engine.runtime import owned_runs, queries, run_actions
from engine.runtime.commit_waker import waker
from engine.runtime.run_feed import SETTLE_SECONDS, CursorInvalidError, FeedEvent, OwnerCursor, OwnerFeed, RunFeed
from engine.runtime.runtime import Runtime
from ui import graph
from ui.copilot_budget import wait_seconds
from ui.healer import Changed, NotFound, RunHealer, healer
from ui.rendering import page, templates
from ui.visitor import Visitor, audit, check_csrf, visitor

router = APIRouter(prefix="/ui/runs", include_in_schema=False)

Who = Annotated[Visitor, Depends(visitor)]
Healer = Annotated[RunHealer, Depends(healer)]
RUN_STATUSES = ("pending", "running", "awaiting_approval", "paused", "succeeded", "failed", "cancelled")
LIST_LIMIT = 50
POLL_SECONDS = 0.5  # the longest a commit by another process goes unnoticed
PING_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def _duration(ms: float | None) -> str:
    if ms is None:
        return "\u2014"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s" if ms < 60_000 else f"{ms / 60_000:.1f} min"


def _when(moment: datetime | None) -> str:
    return "\u2014" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _tokens(usage: dict[str, Any] | None) -> str:
    if not usage:
        return "\u2014"
    found = [usage.get(k) for k in ("prompt_tokens", "completion_tokens", "tokens", "input_tokens", "output_tokens")]
    total = sum(int(v) for v in found if isinstance(v, int | float))
    return str(total) if total else "\u2014"


# the run templates' formatting (names prefixed: the Jinja environment is shared by every screen)
templates.env.filters["runs_duration"] = _duration
templates.env.filters["runs_when"] = _when
templates.env.filters["runs_tokens"] = _tokens


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


# --- the list -------------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def run_list(
    request: Request,
    who: Who,
    status: Annotated[str, Query(max_length=30)] = "",
    flow: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    runtime = _runtime(request)
    status = status if status in RUN_STATUSES else ""
    context = {
        "rows": _rows(runtime, who, status, flow),
        "status": status,
        "flow": flow,
        "statuses": RUN_STATUSES,
        "flows": owned_runs.flow_ids(runtime.db, who.owner_id),
        "live": f"/ui/runs/live?{_query(status, flow)}",
    }
    return page(request, "runs.html", who, context)


@router.get("/live")
async def run_list_live(
    request: Request,
    who: Who,
    status: Annotated[str, Query(max_length=30)] = "",
    flow: Annotated[str, Query(max_length=64)] = "",
    follow: bool = True,
) -> EventSourceResponse:
    """The list's rows again whenever a run of the visitor's records events; the id is the owner feed's cursor."""
    runtime = _runtime(request)
    feed = None
    resume = request.headers.get("last-event-id", "")
    if resume:
        try:
            feed = OwnerFeed(runtime.orchestrator, who.owner_id, OwnerCursor.decode(resume), settle=SETTLE_SECONDS)
        except CursorInvalidError:
            feed = None  # not ours (another server): start from now, the rows are re-rendered whole anyway
    if feed is None:
        start = datetime.now(UTC) - timedelta(seconds=SETTLE_SECONDS)
        feed = OwnerFeed.starting(runtime.orchestrator, who.owner_id, start, settle=SETTLE_SECONDS)
    status = status if status in RUN_STATUSES else ""
    stream = _list_stream(request, runtime, who, feed, status, flow, follow)
    return EventSourceResponse(stream, ping=PING_SECONDS, headers=SSE_HEADERS)


async def _list_stream(
    request: Request, runtime: Runtime, who: Visitor, feed: OwnerFeed, status: str, flow: str, follow: bool
) -> AsyncIterator[ServerSentEvent]:
    signals: asyncio.Queue[Any] = asyncio.Queue()
    found = waker(runtime.orchestrator)
    found.add(asyncio.get_running_loop(), signals)
    try:
        while True:
            _drain(signals)
            batch = await run_in_threadpool(feed.read)
            if batch:
                rows = await run_in_threadpool(_rows, runtime, who, status, flow)
                html = templates.get_template("runs_rows.html").render(rows=rows)
                yield ServerSentEvent(html, id=batch[-1][1])
                continue
            if not follow or await request.is_disconnected():
                return
            await _wait(signals)
    finally:
        found.remove(signals)


def _rows(runtime: Runtime, who: Visitor, status: str, flow: str) -> list[queries.RunSummary]:
    where = owned_runs.RunFilter(flow_id=flow or None, status=status or None)
    return owned_runs.page(runtime.db, who.owner_id, where, LIST_LIMIT)


def _query(status: str, flow: str) -> str:
    return "&".join(f"{k}={v}" for k, v in (("status", status), ("flow", flow)) if v)


# --- a run ----------------------------------------------------------------------------------------------------


@router.get("/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, who: Who) -> HTMLResponse:
    runtime = _runtime(request)
    if not _owned(runtime, who, run_id):
        return page(request, "runs_missing.html", who, {"run_id": run_id}, status=404)
    return page(request, "run.html", who, _run_context(runtime, who, run_id))


@router.get("/{run_id}/live", response_model=None)
async def run_live(
    request: Request, run_id: str, who: Who, after: Annotated[int, Query(ge=0)] = 0
) -> EventSourceResponse | HTMLResponse:
    """One message per recorded event, id = its seq; resumes after ``Last-Event-ID`` (else ``after``: a page that
    follows a resumed run from the event its first stream ended on); ``done`` once finished."""
    runtime = _runtime(request)
    head = await run_in_threadpool(owned_runs.head, runtime.db, run_id)
    if head is None or head.owner_id != who.owner_id:
        return HTMLResponse(_message("run.not_found", f"you have no run {run_id!r}"), status_code=404)
    last = request.headers.get("last-event-id", "")
    after = int(last) if last.isdigit() else after
    feed = RunFeed(runtime.orchestrator, run_id, head.flow_id)
    stream = _run_stream(request, runtime, who, feed, after)
    return EventSourceResponse(stream, ping=PING_SECONDS, headers=SSE_HEADERS)


async def _run_stream(
    request: Request, runtime: Runtime, who: Visitor, feed: RunFeed, seq: int
) -> AsyncIterator[ServerSentEvent]:
    signals: asyncio.Queue[Any] = asyncio.Queue()
    found = waker(runtime.orchestrator)
    found.add(asyncio.get_running_loop(), signals)
    try:
        while True:
            _drain(signals)
            batch = await run_in_threadpool(_read_run, runtime, feed, seq)
            for n, event in enumerate(batch):
                seq = event.seq
                html = templates.get_template("run_event.html").render(event=event)
                if n == len(batch) - 1:  # the newest of this read: bring the page's state up to date with it
                    context = await run_in_threadpool(_run_context, runtime, who, feed.run_id)
                    html += templates.get_template("run_state.html").render(oob=True, **context)
                yield ServerSentEvent(html, id=str(event.seq))
            now = await run_in_threadpool(owned_runs.head, runtime.db, feed.run_id)
            if now is None or (now.finished and now.seq <= seq):
                yield ServerSentEvent(json.dumps({"status": now.status if now else "deleted"}), event="done")
                return
            if batch:
                continue
            if await request.is_disconnected():
                return
            await _wait(signals)
    finally:
        found.remove(signals)


def _read_run(runtime: Runtime, feed: RunFeed, after: int) -> list[FeedEvent]:
    with runtime.db.connect() as conn:
        return feed.read(conn, after)


def _owned(runtime: Runtime, who: Visitor, run_id: str) -> bool:
    head = owned_runs.head(runtime.db, run_id) if len(run_id) <= 26 else None
    return head is not None and head.owner_id == who.owner_id


def _run_context(runtime: Runtime, who: Visitor, run_id: str) -> dict[str, Any]:
    summary = queries.find_run(runtime.db, run_id)
    assert summary is not None, f"run {run_id} vanished"
    steps = queries.run_steps_of(runtime.db, run_id)
    state = runtime.orchestrator.state(run_id)
    flow = runtime.orchestrator.plan(summary.version_id).flow
    statuses = {s.node_id: _look(s.status, s.waiting) for s in steps}
    allowed = run_actions.allowed(state) if who.may("write") else frozenset()
    return {
        "run": summary,
        "steps": steps,
        "graph": graph.render(flow, statuses),
        "approvals": queries.pending_approvals(runtime.db, run_id),
        "allowed": allowed,
        "may_act": who.may("write"),
        "paused": state.paused,
        "flow_name": flow.name or flow.id,
    }


def _look(status: str, waiting: str | None) -> str:
    """A step's status as the graph draws it (a step waiting for a person or a timer is ``waiting``)."""
    if status == "running" and waiting in ("approval", "timer"):
        return "waiting"
    try:
        graph.status_class(status)
    except ValueError:
        return "pending"
    return status


# --- step payloads (on demand) ----------------------------------------------------------------------------------


@router.get("/{run_id}/steps/{key}/{which}", response_class=HTMLResponse)
def step_payload(request: Request, run_id: str, key: str, which: str, who: Who) -> HTMLResponse:
    runtime = _runtime(request)
    if which not in ("input", "output") or not _owned(runtime, who, run_id):
        return HTMLResponse(_message("run.not_found", f"you have no run {run_id!r}"), status_code=404)
    value: Any = None
    note = ""
    if which == "input":
        found = owned_runs.recorded_input(runtime.db, runtime.orchestrator.blobs, run_id, key)
        if found is None:
            note = "No input was recorded for this step (approvals, delays and loops keep none)."
        else:
            value = found.value
            if found.truncated:
                note = "Cut at the preview limit (the whole input was over the payload size limit)."
    else:
        state = runtime.orchestrator.state(run_id)
        try:
            step = state.step(StepKey.parse(key))
        except (ValueError, KeyError):
            step = None
        if step is None or step.status is not StepStatus.SUCCEEDED:
            note = "This step has no output (it has not succeeded)."
        else:
            value = step.output
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str) if not note or value is not None else ""
    context = {"key": key, "which": which, "text": text, "note": note}
    return templates.TemplateResponse(request, "run_payload.html", context)


# --- Ask Jules to fix ---------------------------------------------------------------------------------------------
# declared before the actions: ``/{run_id}/{action}`` would take ``/heal`` for an unknown action


@router.post("/{run_id}/heal", response_class=HTMLResponse)
def heal(request: Request, run_id: str, who: Who, jules: Healer) -> HTMLResponse:
    """Jules's diagnosis of the failed step, the fix as a diff and its proof by replay (seconds at most: this sync
    route runs in the threadpool); nothing is stored."""
    refused = _may_heal(request, who, run_id)
    if refused is not None:
        return refused
    try:
        found = jules.heal(run_id, owner=who.owner_id)
    except NotFound as e:
        return _refused(404, "run.not_found", str(e))
    except IonfluxError as e:
        return _refused(409, e.code, e.message, e.hint)
    return HTMLResponse(templates.get_template("run_heal.html").render(h=found))


@router.post("/{run_id}/heal/apply", response_class=HTMLResponse)
def heal_apply(
    request: Request,
    run_id: str,
    who: Who,
    jules: Healer,
    fingerprint: Annotated[str, Form(max_length=64)] = "",
    as_is: Annotated[bool, Form()] = False,
) -> HTMLResponse:
    """Resume the run from its failed step with the fix shown (proved again first), or as it is; then follow it."""
    refused = _may_heal(request, who, run_id)
    if refused is not None:
        return refused
    runtime = _runtime(request)
    head = owned_runs.head(runtime.db, run_id)
    before = head.seq if head is not None else 0
    try:
        done = jules.apply(run_id, owner=who.owner_id, fingerprint=fingerprint, as_is=as_is)
    except NotFound as e:
        return _refused(404, "run.not_found", str(e))
    except Changed as e:
        return HTMLResponse(templates.get_template("run_heal.html").render(h=e.healing, changed=True), status_code=409)
    except IonfluxError as e:
        return _refused(409, e.code, e.message, e.hint)
    detail: dict[str, object] = {"step": done.resumed_from, "version": done.version, "as_is": as_is}
    if done.cause:
        detail |= {"cause": done.cause, "by": done.by}
    audit(request, who, "heal.apply", run_id, detail)
    where = f"on the fixed version <code>{escape(done.version)}</code>" if done.version else "as it is"
    html = f'<p class="notice" role="status">Resumed from <code>{escape(done.resumed_from)}</code> {where}.</p>'
    return HTMLResponse(html + _resumed(runtime, who, run_id, before))


def _may_heal(request: Request, who: Visitor, run_id: str) -> HTMLResponse | None:
    check_csrf(request, who)
    if not _owned(_runtime(request), who, run_id):
        return _refused(404, "run.not_found", f"you have no run {run_id!r}")
    if not who.may("write"):
        return _refused(403, "auth.forbidden", "your access is read-only: you cannot heal runs")
    seconds = wait_seconds(request, who.owner_id)  # Jules's diagnosis may call a model: the co-pilot's budget
    if seconds:
        answer = _refused(
            429, "request.rate_limited", "too many co-pilot calls this minute", f"try again in {seconds} s"
        )
        answer.headers["Retry-After"] = str(seconds)
        return answer
    return None


def _resumed(runtime: Runtime, who: Visitor, run_id: str, after: int) -> str:
    """The run's state (out of band) and a stream that follows it from ``after``, the event its page last saw."""
    html = templates.get_template("run_state.html").render(oob=True, **_run_context(runtime, who, run_id))
    return html + templates.get_template("run_follow.html").render(run_id=run_id, after=after)


# --- actions ----------------------------------------------------------------------------------------------------


@router.post("/{run_id}/{action}", response_class=HTMLResponse)
def act(
    request: Request,
    run_id: str,
    action: str,
    who: Who,
    step: Annotated[str, Form(max_length=300)] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> HTMLResponse:
    check_csrf(request, who)
    runtime = _runtime(request)
    if action not in run_actions.ACTIONS:
        return _refused(404, "request.unknown_action", f"there is no action {action!r}")
    if not _owned(runtime, who, run_id):
        return _refused(404, "run.not_found", f"you have no run {run_id!r}")
    if not who.may("write"):
        return _refused(403, "auth.forbidden", "your access is read-only: you cannot act on runs")
    orchestrator = runtime.orchestrator
    head = owned_runs.head(runtime.db, run_id)
    before = head.seq if head is not None else 0
    try:
        state = orchestrator.state(run_id)
        if action == "rerun" and step:  # from a chosen step: any finished run, a succeeded one too
            if not state.status.finished:
                raise run_actions.ActionRefusedError(
                    f"run {run_id} is {state.status}: it re-runs once it has finished",
                    hint="wait for it, or cancel it first",
                    code="run.not_rerunnable",
                )
        else:
            run_actions.check(state, action)
        if action == "cancel":
            orchestrator.cancel(run_id, by=who.name)
        elif action == "pause":
            orchestrator.pause(run_id)
        elif action == "resume":
            orchestrator.resume(run_id)
        elif action in ("approve", "reject"):
            orchestrator.approve(run_id, action == "approve", by=who.name, comment=comment or None, node=step)
        else:
            orchestrator.rerun(run_id, from_node=_node_of(step) if step else None)
    except IonfluxError as e:
        return _refused(409, e.code, e.message, e.hint)
    audit(request, who, f"run.{action}", run_id, {"step": step} if step else None)
    done = {
        "cancel": "Cancel requested.",
        "pause": "Paused: running steps finish, no new step starts.",
        "resume": "Resumed.",
        "approve": "Approved.",
        "reject": "Rejected.",
        "rerun": f"Re-running from {step}." if step else "Re-running from the failed steps.",
    }[action]
    html = f'<p class="notice" role="status">{done}</p>'
    if action == "rerun":  # the page's stream ended with the run: follow it again
        return HTMLResponse(html + _resumed(runtime, who, run_id, before))
    # No state here: every action records an event, and the page's live stream (open: the run has not finished)
    # brings it with the run's state, in seq order. A state rendered here could arrive after a newer one the
    # stream had already swapped in (an approval whose next step finished within milliseconds) and leave the page
    # showing "running" for a run that had succeeded, its stream closed.
    return HTMLResponse(html)


def _node_of(step: str) -> str:
    """A re-run starts at a node: the step's (``loop[2].node`` -> ``node``)."""
    try:
        return StepKey.parse(step).node
    except ValueError:
        return step


def _refused(status: int, code: str, message: str, hint: str = "") -> HTMLResponse:
    return HTMLResponse(_message(code, message, hint), status_code=status)


def _message(code: str, message: str, hint: str = "") -> str:
    return templates.get_template("run_refusal.html").render(code=code, message=message, hint=hint)


# --- waiting ----------------------------------------------------------------------------------------------------


async def _wait(signals: asyncio.Queue[Any]) -> None:
    """Until a commit settles here, or ``POLL_SECONDS`` (another process's commits are not signalled)."""
    try:
        await asyncio.wait_for(signals.get(), POLL_SECONDS)
    except TimeoutError:
        return


def _drain(signals: asyncio.Queue[Any]) -> None:
    while not signals.empty():
        signals.get_nowait()
