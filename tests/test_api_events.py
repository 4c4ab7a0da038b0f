"""Live events over Server-Sent Events, against a real HTTP server on loopback: a run's stream and an owner's
stream are dropped mid-run and resumed with ``Last-Event-ID``, and every recorded event arrives exactly once;
LLM tokens come live without ids; heartbeats keep quiet streams open; nothing crosses owners."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from api.server import serve_in_thread
from api.v1.events import StreamSettings
from engine.runtime.execute import live_subject
from engine.store.tables import run_events
from tests.api_helpers import BACKENDS, Api, api
from tests.runtime_helpers import flow

HELD = flow(
    """
    fluxgraph: 1
    id: held
    nodes:
      - {id: first, type: test.sleep, with: {seconds: 0.2}}
      - {id: second, type: test.sleep, needs: [first], with: {seconds: 0.2}}
      - {id: gate, type: approval, needs: [second], with: {message: "go on?"}}
      - {id: list, type: data.set, needs: [gate], with: {items: [1, 2, 3]}}
      - id: loop
        type: foreach
        needs: [list]
        items: "{{ nodes.list.output.items }}"
        concurrency: 1
        do:
          - {id: each, type: test.sleep, with: {seconds: 0.05, value: "{{ item }}"}}
      - {id: done, type: data.set, needs: [loop], with: {ok: true}}
    """
)
QUICK = flow(
    """
    fluxgraph: 1
    id: quick
    nodes:
      - {id: one, type: test.sleep, with: {seconds: 0.2}}
      - {id: two, type: test.sleep, needs: [one], with: {seconds: 0.2}}
    """
)
FAST = StreamSettings(ping_seconds=0.2, poll_seconds=0.2, settle_seconds=2.0)


@dataclass
class Sse:
    id: str | None
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


@pytest.fixture(params=BACKENDS)
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    with api(request.param, tmp_path) as value:
        value.client.app.state.streams = FAST  # type: ignore[attr-defined]
        yield value


@contextmanager
def served(a: Api) -> Iterator[str]:
    server = serve_in_thread(a.client.app, "127.0.0.1:0")  # type: ignore[arg-type]
    try:
        yield server.url
    finally:
        server.stop()


def listen(
    url: str,
    headers: dict[str, str],
    stop: Callable[[list[Sse]], bool] = lambda got: False,
    *,
    comments: list[str] | None = None,
    timeout: float = 30.0,
) -> list[Sse]:
    """Read a stream until ``stop`` says so (then drop the connection) or the server ends it; bounded in time."""
    got: list[Sse] = []
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", url, headers=headers) as answer,
    ):
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in answer.iter_lines():
            assert time.monotonic() < deadline, f"gave up waiting; got {[e.event for e in got]}"
            if line.startswith(":"):
                if comments is not None:
                    comments.append(line)
                    if got and stop(got):
                        return got
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                got.append(Sse(fields.get("id"), fields.get("event", "message"), fields["data"]))
                if stop(got):
                    return got
            fields = {}
    return got


def recorded(a: Api, run_id: str) -> list[tuple[int, str]]:
    with a.runtime.db.connect() as conn:
        rows = conn.execute(
            sa.select(run_events.c.seq, run_events.c.kind).where(run_events.c.run_id == run_id).order_by("seq")
        ).all()
    return [(r.seq, r.kind) for r in rows]


def waits_for_approval(got: list[Sse]) -> bool:
    return any(s["waiting"] == "approval" for e in got if e.id for s in e.json()["steps"])


def test_a_run_stream_resumes_after_dropped_connections_with_no_event_lost_or_repeated(a: Api) -> None:
    # Given a run that stops at an approval halfway
    a.runtime.orchestrator.save_flow(HELD, "held.yaml", owner=a.owner)
    run_id = a.call("POST", "/api/v1/flows/held/runs", "write", json={}).json()["run_id"]
    headers = a.as_("read")
    with served(a) as base:
        url = f"{base}/api/v1/runs/{run_id}/events"
        # When the first connection drops after one event
        one = listen(url, headers, lambda got: len(got) == 1)
        assert [e.event for e in one] == ["run_started"] and one[0].id == "1"
        # And the second resumes after it and drops while the run waits, once a live token and a ping came
        published: list[bool] = []
        comments: list[str] = []

        def until_token(got: list[Sse]) -> bool:
            if waits_for_approval(got) and not published:
                token = {"run_id": run_id, "key": "second", "attempt": 1, "kind": "llm.token", "text": "Hi"}
                a.runtime.bus.publish(live_subject(run_id), json.dumps(token).encode(), durable=False)
                published.append(True)
            return any(e.event == "llm.token" for e in got) and bool(comments)

        two = listen(url, {**headers, "Last-Event-ID": one[-1].id or ""}, until_token, comments=comments)
        token = next(e for e in two if e.event == "llm.token")
        assert token.id is None and token.json()["text"] == "Hi"  # live: no id, so a resume never repeats it
        assert comments and comments[0].startswith(": ping")
        last = [e for e in two if e.id][-1]
        # And the run goes on while nobody listens
        assert a.call("POST", f"/api/v1/runs/{run_id}/approve", "write").status_code == 200
        assert str(a.runtime.wait(run_id, 30)) == "succeeded"
        # Then the third connection gets the rest and the stream ends
        three = listen(url, {**headers, "Last-Event-ID": last.id or ""})
        assert three[-1].event == "end" and three[-1].json()["status"] == "succeeded"
        durable = [e for e in one + two + three if e.id is not None]
        assert [(int(e.id or 0), e.event) for e in durable] == recorded(a, run_id)  # each once, in order
        assert durable[-1].json()["finished"] is True and durable[-1].json()["status"] == "succeeded"
        # And a fresh stream of the finished run replays the same events, and a resumed one only ends
        again = listen(url, headers)
        assert [e.data for e in again if e.id] == [e.data for e in durable]
        ended = listen(url, {**headers, "Last-Event-ID": durable[-1].id or ""})
        assert [e.event for e in ended] == ["end"]
    # And each event says what it changed: steps started, finished (with logs), waiting
    by_seq = {int(e.id or 0): e.json() for e in durable}
    started = {s["key"] for e in by_seq.values() for s in e["steps"] if s["status"] == "running"}
    assert {"first", "second", "gate", "loop[0].each", "loop[2].each"} <= started
    first_done = next(e for e in by_seq.values() if e["kind"] == "step_succeeded" and e["event"]["key"] == "first")
    assert {s["key"]: s["status"] for s in first_done["steps"]} == {"first": "succeeded", "second": "running"}
    assert "output" not in first_done["event"] and first_done["steps"][0]["output_preview"]


def test_an_owner_stream_resumes_across_runs_and_shows_no_other_owners_events(a: Api) -> None:
    # Given two runs of mine and one of another owner's
    since = quote((datetime.now(UTC) - timedelta(seconds=1)).isoformat())
    a.runtime.orchestrator.save_flow(QUICK, "quick.yaml", owner=a.owner)
    a.runtime.orchestrator.save_flow(QUICK.replace("id: quick", "id: theirs"), "theirs.yaml", owner=a.other)
    mine = {a.call("POST", "/api/v1/flows/quick/runs", "write", json={}).json()["run_id"] for _ in range(2)}
    theirs = a.call("POST", "/api/v1/flows/theirs/runs", "other", json={}).json()["run_id"]
    headers = a.as_("read")

    def both_finished(got: list[Sse]) -> bool:
        return {e.json()["run_id"] for e in got if e.id and e.json()["finished"]} == mine

    with served(a) as base:
        url = f"{base}/api/v1/events?since={since}"
        # When the connection drops after three recorded events and resumes with the last id
        one = listen(url, headers, lambda got: len([e for e in got if e.id]) == 3)
        last = [e for e in one if e.id][-1].id or ""
        two = listen(f"{base}/api/v1/events", {**headers, "Last-Event-ID": last}, both_finished)
        # Then every recorded event of my runs came once, each run in order, and none of theirs, live ones included
        got = one + two
        assert theirs not in {e.json()["run_id"] for e in got}
        for run_id in mine:
            kept = [(e.json()["seq"], e.event) for e in got if e.id and e.json()["run_id"] == run_id]
            assert kept == recorded(a, run_id)
        # And with follow=false a caught-up cursor ends at once, with nothing new
        caught_up = [e for e in two if e.id][-1].id
        assert listen(f"{base}/api/v1/events?follow=false&cursor={caught_up}", headers) == []


TALKS = flow(
    """
    fluxgraph: 1
    id: talks
    nodes:
      - {id: say, type: log, with: {message: "half way there"}}
      - {id: rest, type: test.sleep, needs: [say], with: {seconds: 0.2}}
    """
)


def test_live_events_show_steps_starting_their_logs_and_tokens_on_both_streams(a: Api) -> None:
    """What happens between recorded events, as it happens: a step starting on a worker, each log line, an LLM's
    tokens; live, without ids (a reconnect does not repeat them), on the run's stream and its owner's only."""
    a.runtime.orchestrator.save_flow(TALKS, "talks.yaml", owner=a.owner)
    a.runtime.orchestrator.save_flow(TALKS.replace("id: talks", "id: theirs"), "theirs.yaml", owner=a.other)
    headers = a.as_("read")
    with served(a) as base:
        owner_seen: list[Sse] = []

        def owner_done(got: list[Sse]) -> bool:
            owner_seen[:] = got
            return any(e.id and e.json()["finished"] for e in got)

        since = quote((datetime.now(UTC) - timedelta(seconds=1)).isoformat())
        watcher = threading.Thread(target=listen, args=(f"{base}/api/v1/events?since={since}", headers, owner_done))
        watcher.start()
        time.sleep(0.5)  # the owner's stream is listening before the runs start (live events are not replayed)
        theirs = a.call("POST", "/api/v1/flows/theirs/runs", "other", json={}).json()["run_id"]
        run_id = a.call("POST", "/api/v1/flows/talks/runs", "write", json={}).json()["run_id"]
        watcher.join(30)
        assert str(a.runtime.wait(theirs, 30)) == "succeeded"
    live = [(e.event, e.json()) for e in owner_seen if e.id is None]
    assert all(data["run_id"] == run_id for _, data in live), "another owner's live events crossed over"
    assert [(kind, data["key"]) for kind, data in live if kind == "step.started"] == [
        ("step.started", "say"),
        ("step.started", "rest"),
    ]
    logs = [data for kind, data in live if kind == "step.log"]
    assert [(d["key"], d["level"], d["message"]) for d in logs] == [("say", "info", "half way there")]
    # And a token published for my run reaches my owner stream (an LLM step publishes them this way)
    with served(a) as base:
        since = quote(datetime.now(UTC).isoformat())

        def until_token(got: list[Sse]) -> bool:
            return any(e.event == "llm.token" for e in got)

        def publish_soon() -> None:
            time.sleep(0.5)
            token = {"run_id": run_id, "owner": a.owner, "key": "say", "attempt": 1, "kind": "llm.token", "text": "Hi"}
            a.runtime.bus.publish(
                live_subject(run_id), json.dumps(token, separators=(",", ":")).encode(), durable=False
            )

        publisher = threading.Thread(target=publish_soon)
        publisher.start()
        got = listen(f"{base}/api/v1/events?since={since}", headers, until_token)
        publisher.join(5)
        assert [e.json()["text"] for e in got if e.event == "llm.token"] == ["Hi"]


def test_streams_refuse_strangers_and_bad_cursors(tmp_path: Path) -> None:
    with api("embedded", tmp_path) as a:
        a.runtime.orchestrator.save_flow(QUICK, "quick.yaml", owner=a.other)
        theirs = a.call("POST", "/api/v1/flows/quick/runs", "other", json={}).json()["run_id"]
        gone = a.call("GET", f"/api/v1/runs/{theirs}/events", "read")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "run.not_found"
        assert a.call("GET", "/api/v1/events", "anonymous").status_code == 401
        assert a.call("GET", f"/api/v1/runs/{theirs}/events", "anonymous").status_code == 401
        bad = a.call("GET", "/api/v1/events", "read", headers={"Last-Event-ID": "not-a-cursor"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "events.cursor_invalid"
        wrong = a.call("GET", f"/api/v1/runs/{theirs}/events", "other", headers={"Last-Event-ID": "x7"})
        assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "events.cursor_invalid"
        # an id past the run's last event would skip the events up to it: refused, saying where the run is
        past = a.call("GET", f"/api/v1/runs/{theirs}/events", "other", headers={"Last-Event-ID": "99"})
        assert past.status_code == 422 and "past this run's last event" in past.json()["error"]["message"]
        # a cursor that does not decode says so, without the parser's own words
        garbled = a.call("GET", "/api/v1/events?cursor=eyJ3IjoxfQ", "read").json()["error"]["message"]
        assert garbled == "'eyJ3IjoxfQ' is not an events cursor of this server"
