"""Jules over HTTP (``/api/v1/copilot``): conversations that edit a flow draft, one proposal at a time.

- ``POST /copilot/sessions`` starts one (empty, or from a stored flow's latest version); ``GET`` lists and reads.
- ``POST /copilot/sessions/{id}/messages`` is a turn. By default the answer is Server-Sent Events, each event's
  data a JSON object: ``status`` and ``retry`` (``{"text"}``) while Jules works, ``token`` (``{"text"}``) for each
  piece of the reply as it is written, then ``proposal`` (a change was proposed) or ``reply`` (nothing was; the
  reply says why), whose data is the same :class:`TurnOut` the JSON answer carries, then ``done`` (``{}``). A
  failure mid-turn is an ``error`` event (``{"code", "message", "hint"}``) before ``done``. ``Accept:
  application/json`` answers the whole turn at once.
- Accept, reject, save: the draft changes only when a proposal is accepted; saving stores it as the owner's flow.
  Each decision is in the audit log with the change's prompt and planner.

The one-shot tools (plan, estimate, optimise, advice) are in :mod:`api.v1.copilot_tools`. Which planner answers:
the model IONFLUX_MODEL names (through the model aliases), else the offline planner; every answer says which.
Calls that run the co-pilot are rate limited per owner (``IONFLUX_COPILOT_RATE_PER_MINUTE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.accounts import Accounts, Principal
from api.v1 import copilot_tools
from api.v1.copilot_tools import JulesDep, LimitedWriter, errors
from api.v1.deps import AccountsDep, Cursor, Limit, Page, Reader, RequestBody, RuntimeDep, Writer, after, page
from api.v1.errors import ApiError
from copilot.chat import Change, Jules, Session, Turn
from engine.errors import IonfluxError
from engine.store.tables import flow_versions, flows

log = logging.getLogger("ionflux.api")
router = APIRouter(tags=["copilot"])
router.include_router(copilot_tools.router)

SessionId = Annotated[str, Path(max_length=64, description="a chat session's id")]
ChangeId = Annotated[str, Path(max_length=64, description="a proposed change's id")]


# --- shapes ---------------------------------------------------------------------------------------------------------


class NewSession(RequestBody):
    title: str = Field("", max_length=200, description="default: the first message")
    flow_id: str | None = Field(
        None, min_length=1, max_length=64, description="start from this stored flow's latest version"
    )


class MessageIn(RequestBody):
    text: str = Field(min_length=1, max_length=4000, description="what to automate, or what to change in the draft")


class ChangeOut(BaseModel):
    id: str
    status: str = Field(description="pending | accepted | rejected | superseded | invalid")
    prompt: str
    planner: str = Field(description="offline, or model:<name>")
    summary: list[str]
    diff: str = Field(description="unified diff of the draft's YAML")
    after: str = Field(description="the draft as it would be once accepted")
    decided_by: str | None
    decided_at: str | None


class MessageOut(BaseModel):
    role: str = Field(description="user | jules")
    content: str
    author: str = Field(description="who asked, or the planner that answered")
    at: str


class SessionSummary(BaseModel):
    id: str
    title: str
    flow_id: str | None
    created_at: str
    updated_at: str


class SessionPage(Page[SessionSummary]):
    """The owner's conversations, newest first."""


class SessionOut(BaseModel):
    id: str
    title: str
    draft: str = Field(description="the accepted FluxGraph YAML so far ('' before the first acceptance)")
    flow_id: str | None = Field(description="the flow the draft was started from or saved as")
    created_by: str
    pending: str | None = Field(description="the id of the change awaiting a decision")
    messages: list[MessageOut]
    changes: list[ChangeOut]


class TurnOut(BaseModel):
    """Jules's answer to a message: the reply, who answered, and the proposal (None: nothing proposed)."""

    reply: str
    planner: str
    change: ChangeOut | None
    cost: str = Field(description="the proposed flow's forecast, in words")
    tokens_in: int
    tokens_out: int
    cost_usd: float


class Decision(BaseModel):
    change: ChangeOut
    draft: str = Field(description="the session's draft after the decision")


class Saved(BaseModel):
    session_id: str
    flow_id: str
    version: str


AUDITED_DIFF_CHARS = 20_000  # an accepted change's diff as the audit log keeps it


# --- sessions -------------------------------------------------------------------------------------------------------


@router.post("/copilot/sessions", response_model=SessionOut, status_code=201, responses=errors(404, 422))
def start_session(body: NewSession, principal: Writer, runtime: RuntimeDep, jules: JulesDep) -> SessionOut:
    """A new conversation, empty or editing a stored flow of the owner's (its latest version)."""
    draft = _latest_source(runtime.db, body.flow_id, principal.owner_id) if body.flow_id else ""
    session_id = jules.start(
        owner=principal.owner_id, user=principal.actor, title=body.title, draft=draft, flow_id=body.flow_id
    )
    return _session(jules.session(session_id, owner=principal.owner_id))


@router.get("/copilot/sessions", response_model=SessionPage, responses=errors(422))
def list_sessions(principal: Reader, jules: JulesDep, limit: Limit = 50, cursor: Cursor = None) -> SessionPage:
    """Your conversations, newest first."""
    found = jules.sessions(owner=principal.owner_id, limit=limit + 1, before=after(cursor, "sessions"))
    items, next_cursor = page(found, limit, lambda session: str(session["id"]), "sessions")
    return SessionPage(
        items=[
            SessionSummary(
                id=s["id"],
                title=s["title"],
                flow_id=s["flow_id"],
                created_at=_iso(s["created_at"]),
                updated_at=_iso(s["updated_at"]),
            )
            for s in items
        ],
        next_cursor=next_cursor,
    )


@router.get("/copilot/sessions/{session_id}", response_model=SessionOut, responses=errors(404))
def show_session(session_id: SessionId, principal: Reader, jules: JulesDep) -> SessionOut:
    """The draft, every message, and every proposed change with its status, summary and diff."""
    return _session(jules.session(session_id, owner=principal.owner_id))


# --- a turn ---------------------------------------------------------------------------------------------------------


#: one Server-Sent Event of a turn (what an event-stream client reads: its name, and its data as JSON text)
TURN_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["status", "retry", "token", "proposal", "reply", "error", "done"]},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "status/retry/token: {text}; proposal/reply: a TurnOut; error: {code, message, hint}; "
            "done: {}",
        },
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


@router.post(
    "/copilot/sessions/{session_id}/messages",
    response_model=TurnOut,
    responses={
        **errors(404, 422, 429),
        200: {
            "description": "the turn: Server-Sent Events by default (status, retry, token, then proposal or reply, "
            "then done); one JSON answer with `Accept: application/json`",
            "content": {"text/event-stream": {"schema": TURN_EVENT}},
        },
    },
)
async def say(
    session_id: SessionId, body: MessageIn, request: Request, principal: LimitedWriter, jules: JulesDep
) -> Response:
    """Send a message; Jules answers with a proposal for the draft (streamed as it is written)."""
    owner = principal.owner_id
    await run_in_threadpool(jules.session, session_id, owner=owner)  # a missing session is a 404, not a stream
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/event-stream" not in accept:
        turn = await run_in_threadpool(jules.say, session_id, body.text, owner=owner, user=principal.actor)
        return JSONResponse(_turn(turn).model_dump(mode="json"))
    return EventSourceResponse(_stream(jules, session_id, body.text, principal), ping=15)


async def _stream(jules: Jules, session_id: str, text: str, principal: Principal) -> AsyncIterator[ServerSentEvent]:
    """Jules.say in a worker thread; its listen callback feeds this stream through a queue, in order."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (the server stopped): the turn is still recorded
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def work() -> None:
        try:
            turn = jules.say(session_id, text, owner=principal.owner_id, user=principal.actor, listen=put)
        except IonfluxError as e:
            put("error", {"code": e.code, "message": e.message, "hint": e.hint})
        except Exception:
            log.exception("the co-pilot failed in session %s", session_id)
            put(
                "error",
                {"code": "server.error", "message": "the co-pilot failed; it is in the server's log", "hint": ""},
            )
        else:
            put("turn", turn)

    # the turn runs to its end even if the client leaves: it is recorded, and GET .../sessions/{id} shows it
    worker = loop.run_in_executor(None, work)
    while True:
        kind, value = await queue.get()
        if kind == "turn":
            answer = _turn(value)
            yield _event("proposal" if answer.change else "reply", answer.model_dump(mode="json"))
            break
        if kind == "error":
            yield _event("error", value)
            break
        yield _event(kind, {"text": value})  # token, retry, status
    await worker
    yield _event("done", {})


def _event(name: str, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, ensure_ascii=False), event=name)


# --- decisions ------------------------------------------------------------------------------------------------------


@router.post(
    "/copilot/sessions/{session_id}/changes/{change_id}/accept", response_model=Decision, responses=errors(404, 409)
)
def accept(
    session_id: SessionId, change_id: ChangeId, principal: Writer, jules: JulesDep, accounts: AccountsDep
) -> Decision:
    """Make the proposed change the session's draft (refused if it is not pending or was made on an older draft)."""
    draft = jules.accept(session_id, change_id, owner=principal.owner_id, user=principal.actor)
    return _decided(jules, session_id, change_id, principal, accounts, "copilot.accept", draft)


@router.post(
    "/copilot/sessions/{session_id}/changes/{change_id}/reject", response_model=Decision, responses=errors(404, 409)
)
def reject(
    session_id: SessionId, change_id: ChangeId, principal: Writer, jules: JulesDep, accounts: AccountsDep
) -> Decision:
    """Turn the proposed change down; the draft stays as it is."""
    jules.reject(session_id, change_id, owner=principal.owner_id, user=principal.actor)
    return _decided(jules, session_id, change_id, principal, accounts, "copilot.reject", None)


@router.post("/copilot/sessions/{session_id}/save", response_model=Saved, responses=errors(404, 409, 422))
def save(
    session_id: SessionId, principal: Writer, runtime: RuntimeDep, jules: JulesDep, accounts: AccountsDep
) -> Saved:
    """Store the session's draft as a flow of the owner (a new version if the flow exists)."""
    session = jules.session(session_id, owner=principal.owner_id)
    if not session.draft:
        raise ApiError(409, "copilot.draft_empty", "there is no draft to save yet", hint="accept a proposal first")
    flow_id, version = runtime.orchestrator.save_flow(session.draft, f"chat session {session_id}", principal.owner_id)
    jules.saved_as(session_id, flow_id, owner=principal.owner_id)
    accounts.audit(principal, "copilot.save", flow_id, {"session": session_id, "version": version})
    return Saved(session_id=session_id, flow_id=flow_id, version=version)


# --- small pieces ---------------------------------------------------------------------------------------------------


def _decided(
    jules: Jules,
    session_id: str,
    change_id: str,
    principal: Principal,
    accounts: Accounts,
    action: str,
    draft: str | None,
) -> Decision:
    session = jules.session(session_id, owner=principal.owner_id)
    change = next(c for c in session.changes if c.id == change_id)
    detail: dict[str, Any] = {
        "session": session_id,
        "change": change_id,
        "prompt": change.prompt,
        "planner": change.planner,
    }
    if action == "copilot.accept":  # what was accepted, in the log itself (bounded: a diff is rarely long)
        detail |= {"summary": list(change.summary), "diff": change.diff[:AUDITED_DIFF_CHARS]}
    accounts.audit(principal, action, change_id, detail)
    return Decision(change=_change(change), draft=session.draft if draft is None else draft)


def _latest_source(db: sa.Engine, flow_id: str, owner: str) -> str:
    query = (
        sa.select(flow_versions.c.source)
        .select_from(flows.join(flow_versions, flow_versions.c.id == flows.c.latest_version))
        .where(flows.c.id == flow_id, flows.c.owner_id == owner, flows.c.deleted_at.is_(None))
    )
    with db.connect() as conn:
        source = conn.execute(query).scalar()
    if source is None:
        raise ApiError(404, "flow.not_found", f"you have no flow {flow_id!r}", hint="GET /api/v1/flows lists them")
    return str(source)


def _session(s: Session) -> SessionOut:
    return SessionOut(
        id=s.id,
        title=s.title,
        draft=s.draft,
        flow_id=s.flow_id,
        created_by=s.created_by,
        pending=s.pending.id if s.pending else None,
        messages=[MessageOut(**m) for m in s.messages],
        changes=[_change(c) for c in s.changes],
    )


def _change(c: Change) -> ChangeOut:
    return ChangeOut(
        id=c.id,
        status=c.status,
        prompt=c.prompt,
        planner=c.planner,
        summary=list(c.summary),
        diff=c.diff,
        after=c.after,
        decided_by=c.decided_by,
        decided_at=_iso(c.decided_at) if c.decided_at else None,
    )


def _turn(t: Turn) -> TurnOut:
    return TurnOut(
        reply=t.reply,
        planner=t.planner,
        change=_change(t.change) if t.change else None,
        cost=t.cost,
        tokens_in=t.tokens_in,
        tokens_out=t.tokens_out,
        cost_usd=t.cost_usd,
    )


def _iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
