"""Live events over Server-Sent Events (``text/event-stream``): one run's, or all of an owner's runs'.

Every recorded event of a run (``run_events``) is one SSE message::

    id: 7
    event: step_succeeded
    data: {"run_id": "…", "flow_id": "…", "seq": 7, "kind": "step_succeeded", "at": "…", "event": {…},
           "status": "running", "finished": false, "steps": [{"key": "fetch", "status": "succeeded", …},
                                                            {"key": "summarise", "status": "running", …}]}

``steps`` are the steps the event changed (started, finished with their logs, waiting for a person or a timer);
``finished`` is true on the event that finished the run. A run's stream sends its events from the start (or
after ``Last-Event-ID``, the ``seq`` of the last one received: a reconnect loses none and repeats none), then
new ones as they commit, and ends with ``event: end`` once the run has finished (``follow=true`` keeps it open,
for re-runs). Recorded events are never skipped: they are read from the database, not from memory.

Live, unrecorded events (a step starting on a worker: ``step.started``; its log lines while it runs:
``step.log``; an LLM step's tokens: ``llm.token``) come in between, as they happen, with no ``id``: a client that
reconnects does not get them again, and they do not move its ``Last-Event-ID`` (engine.runtime.execute sends them).

The owner's stream (``/api/v1/events``) sends every event of every run of theirs, from now (or ``since``), with
an opaque cursor as the ``id`` (engine.runtime.run_feed explains it); ``Last-Event-ID`` resumes after it. It gets
the live events of the owner's runs too, picked by the ``owner`` each one carries.

Both send a comment (``: ping``) every 15 s so proxies keep the connection, notice a finished run at once when
this process recorded it (the orchestrator's ``committed`` condition) and otherwise look every half second.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.v1.deps import Reader, RuntimeDep
from api.v1.errors import ApiError, Problem
from api.v1.runs import RunId, owned
from engine.runtime import owned_runs
from engine.runtime.commit_waker import waker as _waker
from engine.runtime.execute import LIVE_SUBJECTS, live_subject
from engine.runtime.run_feed import (
    BATCH,
    SETTLE_SECONDS,
    CursorInvalidError,
    FeedEvent,
    OwnerCursor,
    OwnerFeed,
    RunFeed,
)
from engine.runtime.runtime import Runtime
from engine.steps.bus import Message

router = APIRouter(tags=["events"])


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """How streams wait: ``app.state.streams`` overrides them (tests make them short)."""

    ping_seconds: float = 15.0  # a comment this often keeps proxies from closing a quiet stream
    poll_seconds: float = 0.5  # the longest a commit by another process goes unnoticed
    settle_seconds: float = SETTLE_SECONDS  # see engine.runtime.run_feed


class StepChangeOut(BaseModel):
    key: str
    status: str
    attempt: int
    waiting: str | None
    error: dict[str, Any] | None
    output_preview: str | None
    logs: list[list[str]] | None


class RunEventOut(BaseModel):
    """The ``data`` of each recorded event's SSE message (``id``: the run's seq, or the owner's cursor)."""

    run_id: str
    flow_id: str
    seq: int
    kind: str = Field(description="run_started, step_succeeded, step_failed, approval_decided, timer_fired, …")
    at: datetime
    event: dict[str, Any] = Field(description="the event's own fields (payloads left out: read them by route)")
    status: str = Field(description="the run's status after the event")
    finished: bool
    steps: list[StepChangeOut] = Field(description="the steps the event changed")


# one message of the stream (OpenAPI 3.1 has no word for a stream's items; 3.2's `itemSchema` is this, and tools
# such as schemathesis read an event stream's `schema` as each event's)
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {
            "type": "string",
            "description": "the kind: run_started, step_succeeded, …, end; live: step.started, step.log, llm.token",
        },
        "id": {"type": "string", "description": "a recorded event's seq (a run's stream) or cursor (the owner's)"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "a RunEventOut (`x-event-data`); `end`: {run_id, status, seq}; live: {run_id, key, …}",
        },
        "retry": {"type": "integer"},
    },
    "required": ["data"],
}


def _sse_doc(what: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": what,
            "content": {"text/event-stream": {"schema": SSE_EVENT, "x-event-data": RunEventOut.model_json_schema()}},
        },
        404: {"model": Problem},
        422: {"model": Problem},
    }


@router.get(
    "/runs/{run_id}/events",
    response_class=EventSourceResponse,
    responses=_sse_doc("the run's events as Server-Sent Events; `data` is a RunEventOut"),
)
async def run_events(
    run_id: RunId,
    request: Request,
    principal: Reader,
    runtime: RuntimeDep,
    follow: Annotated[bool, Query(description="stay open after the run finished (re-runs continue it)")] = False,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
    after: Annotated[int | None, Query(ge=0, description="like Last-Event-ID: the seq to resume after")] = None,
) -> EventSourceResponse:
    """A run's events, from the start or after ``Last-Event-ID``, then as they happen; ends when the run has
    finished unless ``follow``."""
    found = await run_in_threadpool(owned, runtime, principal, run_id)
    seq = after if after is not None else _seq(last_event_id)
    head = await run_in_threadpool(owned_runs.head, runtime.db, run_id)
    if head is not None and seq > head.seq:  # trusting it would skip the events up to it, silently
        where = "after" if after is not None else "Last-Event-ID"
        raise ApiError(
            422,
            "events.cursor_invalid",
            f"{where} {seq} is past this run's last event ({head.seq})",
            hint="send the id of the last event received from this run's stream, or none to start from the first",
            location=[{"field": where, "message": f"past the last event ({head.seq})"}],
        )
    settings = _settings(request)
    feed = RunFeed(runtime.orchestrator, run_id, found.flow_id)
    return EventSourceResponse(
        _run_stream(request, runtime, feed, seq, follow, settings),
        ping=settings.ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses=_sse_doc("every event of your runs as Server-Sent Events; `data` is a RunEventOut"),
)
async def owner_events(
    request: Request,
    principal: Reader,
    runtime: RuntimeDep,
    since: Annotated[datetime | None, Query(description="start with events after this time (default: now)")] = None,
    follow: Annotated[bool, Query(description="false: send what there is, then end")] = True,
    last_event_id: Annotated[str | None, Header(max_length=20000)] = None,
    cursor: Annotated[str | None, Query(max_length=20000, description="like Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Every event of every run of yours as it commits, resumable with ``Last-Event-ID``."""
    settings = _settings(request)
    resume = cursor or last_event_id
    if resume:
        try:
            at = OwnerCursor.decode(resume)
        except CursorInvalidError as e:
            where = [{"field": "cursor" if cursor else "Last-Event-ID", "message": "not a cursor of this server"}]
            raise ApiError(422, e.code, e.message, hint=e.hint, location=where) from None
        feed = OwnerFeed(runtime.orchestrator, principal.owner_id, at, settle=settings.settle_seconds)
    else:
        if since is not None and since.tzinfo is None:
            raise ApiError(
                422,
                "request.invalid",
                "since needs a time zone, e.g. 2026-01-31T09:00:00Z",
                hint="end the time with Z (UTC) or an offset such as +01:00",
                location=[{"field": "since", "message": "no time zone"}],
            )
        start = since or datetime.now(UTC) - timedelta(seconds=settings.settle_seconds)
        feed = OwnerFeed.starting(runtime.orchestrator, principal.owner_id, start, settle=settings.settle_seconds)
    return EventSourceResponse(
        _owner_stream(request, runtime, feed, follow, settings),
        ping=settings.ping_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- streams ----------------------------------------------------------------------------------------------------


async def _run_stream(
    request: Request, runtime: Runtime, feed: RunFeed, seq: int, follow: bool, settings: StreamSettings
) -> AsyncIterator[ServerSentEvent]:
    signals: asyncio.Queue[Message | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def on_live(message: Message) -> None:  # the publisher's thread (a worker)
        loop.call_soon_threadsafe(signals.put_nowait, message)

    unsubscribe = runtime.bus.subscribe(live_subject(feed.run_id), on_live)
    waker = _waker(runtime.orchestrator)
    waker.add(loop, signals)
    try:
        while True:
            _drain(signals)  # before reading: a commit from here on wakes the wait below
            batch = await run_in_threadpool(_read_run, runtime, feed, seq)
            for event in batch:
                seq = event.seq
                yield _message(event, str(event.seq))
            if not follow:
                now = await run_in_threadpool(owned_runs.head, runtime.db, feed.run_id)
                if now is None or (now.finished and now.seq <= seq):  # finished, and everything sent
                    status = now.status if now is not None else "deleted"
                    yield ServerSentEvent(
                        json.dumps({"run_id": feed.run_id, "status": status, "seq": seq}), event="end"
                    )
                    return
            if len(batch) >= BATCH:
                continue
            if await request.is_disconnected():
                return
            async for live in _wait(signals, settings.poll_seconds):
                yield ServerSentEvent(live.data.decode(), event=_live_kind(live))
    finally:
        unsubscribe()
        waker.remove(signals)


async def _owner_stream(
    request: Request, runtime: Runtime, feed: OwnerFeed, follow: bool, settings: StreamSettings
) -> AsyncIterator[ServerSentEvent]:
    signals: asyncio.Queue[Message | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    owner = feed.owner_id

    def on_live(message: Message) -> None:  # the publisher's thread (a worker): only this owner's runs
        if f'"owner":{json.dumps(owner)}'.encode() in message.data:  # compact JSON, written by engine.runtime.execute
            loop.call_soon_threadsafe(signals.put_nowait, message)

    unsubscribe = runtime.bus.subscribe(LIVE_SUBJECTS, on_live) if follow else (lambda: None)
    waker = _waker(runtime.orchestrator)
    waker.add(loop, signals)
    try:
        while True:
            _drain(signals)
            batch = await run_in_threadpool(feed.read)
            for event, cursor in batch:
                yield _message(event, cursor)
            if batch:
                continue  # there may be more: read again before waiting
            if not follow or await request.is_disconnected():
                return
            async for live in _wait(signals, settings.poll_seconds):
                yield ServerSentEvent(live.data.decode(), event=_live_kind(live))
    finally:
        unsubscribe()
        waker.remove(signals)


async def _wait(signals: asyncio.Queue[Message | None], timeout: float) -> AsyncIterator[Message]:
    """Until a commit settles a run here, or ``timeout``; yields the live messages that come meanwhile."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return
        try:
            item = await asyncio.wait_for(signals.get(), left)
        except TimeoutError:
            return
        if item is None:
            return
        yield item


def _drain(signals: asyncio.Queue[Message | None]) -> None:
    """Forget wake-ups (not live messages, which are sent before the next read)."""
    kept = []
    while not signals.empty():
        item = signals.get_nowait()
        if item is not None:
            kept.append(item)
    for item in kept:
        signals.put_nowait(item)


def _message(event: FeedEvent, event_id: str) -> ServerSentEvent:
    return ServerSentEvent(json.dumps(event.to_dict(), separators=(",", ":")), id=event_id, event=event.kind)


def _live_kind(message: Message) -> str:
    try:
        kind = json.loads(message.data).get("kind")
    except (ValueError, AttributeError):
        kind = None
    return kind if isinstance(kind, str) and kind else "live"


def _read_run(runtime: Runtime, feed: RunFeed, after: int) -> list[FeedEvent]:
    with runtime.db.connect() as conn:
        return feed.read(conn, after)


def _seq(last_event_id: str | None) -> int:
    if last_event_id is None or last_event_id == "":
        return 0
    if not last_event_id.isdigit():
        raise ApiError(
            422,
            "events.cursor_invalid",
            f"Last-Event-ID {last_event_id[:40]!r} is not an event id of this run's stream (its seq)",
            hint="send the id of the last event received (a number), or none to start from the first",
            location=[{"field": "Last-Event-ID", "message": "not a seq"}],
        )
    return int(last_event_id)


def _settings(request: Request) -> StreamSettings:
    found = getattr(request.app.state, "streams", None)
    return found if isinstance(found, StreamSettings) else StreamSettings()
