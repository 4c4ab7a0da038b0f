"""The Runs screens over HTTP (TestClient, the open local demo): the list and a run's page as HTML, another owner's
run not found, read-only visitors without actions, the actions and their readable refusals, and the live streams'
HTML fragments with the run's seq as SSE ids, resumed after ``Last-Event-ID``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.accounts import Accounts
from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER
from tests.runtime_helpers import FRAGILE, GATED, running
from tests.ui_helpers import local_client, open_demo_app
from ui.visitor import Visitor

HX = {"HX-Request": "true"}


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with running("embedded", tmp_path) as runtime:
        yield runtime


@pytest.fixture
def app(rt: Runtime) -> FastAPI:
    return open_demo_app(rt)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with local_client(app, raise_server_exceptions=False) as value:
        yield value


def start(rt: Runtime, text: str, owner: str = LOCAL_OWNER) -> str:
    _, version = rt.orchestrator.save_flow(text, "test.yaml", owner=owner)
    return rt.orchestrator.start_run(version)


def wait_for(rt: Runtime, run_id: str, status: str) -> None:
    import time

    deadline = time.monotonic() + 15
    while str(rt.status(run_id)) != status:
        assert time.monotonic() < deadline, f"run {run_id} is {rt.status(run_id)}, not {status}"
        time.sleep(0.05)


def ids(stream: str) -> list[int]:
    return [int(n) for n in re.findall(r"^id: (\d+)", stream.replace("\r\n", "\n"), re.M)]


def test_the_list_shows_the_visitors_runs_newest_first_and_filters(rt: Runtime, client: TestClient) -> None:
    # Given a run waiting for approval and a failed one
    gated = start(rt, GATED)
    wait_for(rt, gated, "awaiting_approval")
    broken = start(rt, FRAGILE)
    wait_for(rt, broken, "failed")

    # When the list is shown, then both are there, newest first, with a live stream on the rows
    html = client.get("/ui/runs").text
    assert html.index(f'id="run-{broken}"') < html.index(f'id="run-{gated}"')
    assert 'hx-sse:connect="/ui/runs/live?"' in html
    assert '<label for="filter-status">Status</label>' in html

    # When filtered by status, then only the matching run shows
    failed = client.get("/ui/runs", params={"status": "failed"}).text
    assert f'id="run-{broken}"' in failed and f'id="run-{gated}"' not in failed
    by_flow = client.get("/ui/runs", params={"flow": "gated"}).text
    assert f'id="run-{gated}"' in by_flow and f'id="run-{broken}"' not in by_flow


def test_the_list_stream_sends_the_rows_with_a_resumable_cursor(rt: Runtime, client: TestClient) -> None:
    # Given a finished run
    broken = start(rt, FRAGILE)
    wait_for(rt, broken, "failed")

    # When the list's stream is read (not followed), then it sends the rows with the owner feed's cursor as id
    answer = client.get("/ui/runs/live", params={"follow": "false"})
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert f'id="run-{broken}"' in answer.text
    cursor = re.findall(r"^id: (\S+)", answer.text.replace("\r\n", "\n"), re.M)[-1]

    # When it resumes after that cursor, then nothing has happened since
    again = client.get("/ui/runs/live", params={"follow": "false"}, headers={"Last-Event-ID": cursor})
    assert f'id="run-{broken}"' not in again.text


def test_a_run_page_shows_graph_steps_and_actions(rt: Runtime, client: TestClient) -> None:
    # Given a run waiting for its approval
    gated = start(rt, GATED)
    wait_for(rt, gated, "awaiting_approval")

    # When its page is shown
    html = client.get(f"/ui/runs/{gated}").text

    # Then the graph is coloured by the steps' statuses, and the steps, actions and live stream are there
    assert re.search(r'id="node-prepare"[^>]*status-succeeded', html)
    assert re.search(r'id="node-gate"[^>]*status-waiting', html)
    assert 'id="step-prepare"' in html
    assert f'hx-post="/ui/runs/{gated}/approve"' in html
    assert f'hx-post="/ui/runs/{gated}/reject"' in html
    assert f'hx-post="/ui/runs/{gated}/cancel"' in html
    assert f'hx-sse:connect="/ui/runs/{gated}/live"' in html
    assert 'hx-sse:close="done"' in html

    # When a step's input and output are asked for, then they come as fragments
    output = client.get(f"/ui/runs/{gated}/steps/prepare/output").text
    assert "120" in output and "<pre" in output


def test_approving_from_the_page_lets_the_run_finish(rt: Runtime, client: TestClient) -> None:
    # Given a run waiting for approval
    gated = start(rt, GATED)
    wait_for(rt, gated, "awaiting_approval")

    # When it is approved (as htmx posts it), then it goes on and finishes
    answer = client.post(f"/ui/runs/{gated}/approve", data={"step": "gate"}, headers=HX)
    assert answer.status_code == 200, answer.text
    assert "Approved." in answer.text
    # (and the page's state comes from its stream alone: an answer rendered before the next step finished
    # must not overwrite the newer state the stream has already swapped in)
    assert "hx-swap-oob" not in answer.text
    wait_for(rt, gated, "succeeded")

    # When it is approved again, then the refusal is a readable sentence with its code
    again = client.post(f"/ui/runs/{gated}/approve", data={"step": "gate"}, headers=HX)
    assert again.status_code == 409
    assert "no approval waits for a decision" in again.text
    assert "run.no_pending_approval" in again.text
    assert "Traceback" not in again.text


def test_a_finished_run_re_runs_from_a_chosen_step(rt: Runtime, client: TestClient) -> None:
    # Given a run that succeeded after its approval
    gated = start(rt, GATED)
    wait_for(rt, gated, "awaiting_approval")
    assert 'class="rerun-from"' not in client.get(f"/ui/runs/{gated}").text  # not while it runs
    rt.orchestrator.approve(gated, True, by="test")
    wait_for(rt, gated, "succeeded")

    # Then each step offers a re-run from it
    html = client.get(f"/ui/runs/{gated}").text
    assert html.count('class="rerun-from"') == 3 and 'value="pay"' in html

    # When it is re-run from its last step, then only that step runs again; the approval is kept
    answer = client.post(f"/ui/runs/{gated}/rerun", data={"step": "pay"}, headers=HX)
    assert answer.status_code == 200 and "Re-running from pay." in answer.text
    wait_for(rt, gated, "succeeded")
    state = rt.orchestrator.state(gated)
    assert state.attempt == 2 and [str(k) for k, s in state.steps.items() if not s.reused] == ["pay"]

    # A step the flow does not have is refused with its reason
    refused = client.post(f"/ui/runs/{gated}/rerun", data={"step": "nope"}, headers=HX)
    assert refused.status_code == 409 and "cannot start at &#39;nope&#39;" in refused.text


def test_refusals_and_a_failing_steps_error(rt: Runtime, client: TestClient) -> None:
    # Given a failed run
    broken = start(rt, FRAGILE)
    wait_for(rt, broken, "failed")

    # Then its page shows the failing step's error and offers a re-run, not a cancel
    html = client.get(f"/ui/runs/{broken}").text
    assert 'class="step-error"' in html
    assert f'hx-post="/ui/runs/{broken}/rerun"' in html
    assert f'hx-post="/ui/runs/{broken}/cancel"' not in html

    # When it is cancelled, paused or resumed anyway, then each refusal says why, with its code
    for action, code in (("cancel", "run.finished"), ("pause", "run.finished"), ("resume", "run.not_paused")):
        answer = client.post(f"/ui/runs/{broken}/{action}", headers=HX)
        assert answer.status_code == 409
        assert code in answer.text and 'role="alert"' in answer.text

    # When re-run, then it runs again (and fails again)
    assert client.post(f"/ui/runs/{broken}/rerun", headers=HX).status_code == 200


def test_another_owners_run_is_not_found(rt: Runtime, client: TestClient) -> None:
    # Given another owner's run
    other = Accounts(rt.db).create_owner("Rui", email="rui@example.com", password="rui-password-1")
    theirs = start(rt, FRAGILE.replace("id: fragile", "id: theirs"), owner=other)
    wait_for(rt, theirs, "failed")

    # Then its page, stream, payloads and actions are not found, and the list does not show it
    page = client.get(f"/ui/runs/{theirs}")
    assert page.status_code == 404 and "Run not found" in page.text
    assert client.get(f"/ui/runs/{theirs}/live").status_code == 404
    assert client.get(f"/ui/runs/{theirs}/steps/fetch/output").status_code == 404
    assert client.post(f"/ui/runs/{theirs}/rerun", headers=HX).status_code == 404
    assert theirs not in client.get("/ui/runs").text


def test_a_read_only_visitor_sees_no_actions(rt: Runtime, app: FastAPI, client: TestClient) -> None:
    # Given a visitor with read scope only
    app.state.ui_visitor = lambda request: Visitor(LOCAL_OWNER, "reader", "read", None)
    gated = start(rt, GATED)
    wait_for(rt, gated, "awaiting_approval")

    # Then the page offers no action, and an action posted anyway is refused
    html = client.get(f"/ui/runs/{gated}").text
    assert "hx-post=" not in html
    answer = client.post(f"/ui/runs/{gated}/cancel", headers=HX)
    assert answer.status_code == 403 and "read-only" in answer.text


def test_the_run_stream_sends_html_per_event_with_seq_ids_and_resumes(rt: Runtime, client: TestClient) -> None:
    # Given a finished run
    broken = start(rt, FRAGILE)
    wait_for(rt, broken, "failed")

    # When its stream is read, then every event comes as HTML with its seq as id, the state out of band, then done
    answer = client.get(f"/ui/runs/{broken}/live")
    assert answer.headers["content-type"].startswith("text/event-stream")
    seqs = ids(answer.text)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 3
    assert '<li class="activity-item" data-seq="1">' in answer.text
    assert 'id="run-graph" class="run-graph" hx-swap-oob="true"' in answer.text
    assert answer.text.replace("\r\n", "\n").rstrip().splitlines()[-2] == "event: done"

    # When it reconnects after event 2, then it gets only the rest
    again = client.get(f"/ui/runs/{broken}/live", headers={"Last-Event-ID": "2"})
    assert ids(again.text) == seqs[2:]
    assert 'data-seq="2"' not in again.text
