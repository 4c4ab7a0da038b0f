"""The Builder without a browser: the page's structure, a message answered with a proposal (whole, or streamed
as HTML Server-Sent Events), accept and reject, save and run, owner isolation, and the CSRF and scope refusals."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.accounts import Accounts
from api.app import create_app
from api.settings import Settings
from api.ui_jules import UiJules
from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER
from tests.runtime_helpers import running
from tests.ui_helpers import builder_demo
from tests.ui_helpers import ui as signed_ui
from ui.visitor import Visitor

HTMX = {"HX-Request": "true"}
STREAM = {**HTMX, "Accept": "text/html, text/event-stream"}
REQUEST = "When I run it, set a greeting to hello and log it"  # the offline planner: data.set then log


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    with builder_demo(tmp_path) as value:
        yield value


def new_session(client: TestClient) -> str:
    answer = client.get("/ui/builder")
    assert answer.status_code == 303, answer.text
    found = re.fullmatch(r"/ui/builder\?session=(\w+)", answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def change_id(html: str) -> str:
    found = re.search(r'/changes/(\w+)/accept"', html)
    assert found, html
    return found.group(1)


def test_the_page_has_the_chat_the_suggestion_and_an_empty_pane(demo: tuple[TestClient, Runtime]) -> None:
    client, _ = demo
    session = new_session(client)
    html = client.get(f"/ui/builder?session={session}").text
    assert '<label for="message">Message to Jules</label>' in html and 'id="message" name="text"' in html
    assert f'hx-post="/ui/builder/{session}/messages"' in html and ">Send</button>" in html
    assert "Every weekday at 8:30 Lisbon time, fetch https://example.com/api/orders" in html
    assert "No draft yet" in html and 'href="/ui/builder" aria-current="page"' in html
    assert client.get("/ui/builder?session=nope").status_code == 404


def test_opening_the_builder_again_returns_to_the_untouched_session(demo: tuple[TestClient, Runtime]) -> None:
    # Given the builder opened once and left as it was
    client, _ = demo
    first = new_session(client)

    # When it is opened again (a refresh of /, say), then it is the same session, not one more empty one
    assert new_session(client) == first

    # When that session has been used, then opening the builder gives a new one
    client.post(f"/ui/builder/{first}/messages", data={"text": REQUEST}, headers=HTMX)
    assert new_session(client) != first


def test_a_message_is_proposed_accepted_and_drawn(demo: tuple[TestClient, Runtime]) -> None:
    client, rt = demo
    session = new_session(client)

    # When a request is sent (the whole turn at once), then the reply and a proposal with its diff come back
    html = client.post(f"/ui/builder/{session}/messages", data={"text": REQUEST}, headers=HTMX).text
    assert "You</p>" in html and REQUEST in html and "Here is a first draft with 2 steps" in html
    assert '<hx-partial hx-target="#proposal"' in html and "Proposed change" in html
    assert '<span class="diff-add">+fluxgraph: 1</span>' in html
    assert "proposed</span>" in html and 'id="node-set"' in html and 'id="node-log"' in html
    assert '<hx-partial hx-target="#message" hx-swap="outerHTML">' in html
    change = change_id(html)

    # When it is accepted, then the chat says so and the pane draws the draft, with Save and run
    html = client.post(f"/ui/builder/{session}/changes/{change}/accept", headers=HTMX).text
    assert "Accepted: the draft has the change." in html
    assert 'id="node-set"' in html and ">Save and run</button>" in html and "proposed</span>" not in html
    # and the owner's audit log keeps what was accepted: the change's summary and its diff
    (entry,) = [e for e in Accounts(rt.db).audit_log(LOCAL_OWNER) if e["action"] == "copilot.accept"]
    assert entry["target"] == change and "+" in entry["detail"]["diff"] and entry["detail"]["summary"]

    # When the page is loaded again, then it shows the conversation and the draft, its YAML and its cost
    page = client.get(f"/ui/builder?session={session}").text
    assert REQUEST in page and 'id="node-log"' in page and "type: data.set" in page
    assert 'id="view-cost"' in page and "No forecast" not in page
    assert "Every weekday" not in page  # the suggestion is for an empty chat

    # When it is accepted twice, then the refusal is a readable sentence
    again = client.post(f"/ui/builder/{session}/changes/{change}/accept", headers=HTMX)
    assert again.status_code == 409 and 'class="refusal"' in again.text


def test_the_reply_streams_as_html_events(demo: tuple[TestClient, Runtime]) -> None:
    client, _ = demo
    session = new_session(client)
    answer = client.post(f"/ui/builder/{session}/messages", data={"text": REQUEST}, headers=STREAM)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    data = [
        "\n".join(line[len("data: ") :] for line in block.splitlines() if line.startswith("data: "))
        for block in answer.text.replace("\r\n", "\n").split("\n\n")
        if "data: " in block
    ]
    assert 'class="msg msg-user"' in data[0] and 'aria-busy="true"' in data[0]
    turn = re.search(r'id="reply-(\w+)"', data[0])
    assert turn is not None
    pieces = [d for d in data if d.startswith(f'<hx-partial hx-target="#reply-{turn.group(1)}" hx-swap="beforeend">')]
    assert len(pieces) > 5  # word by word
    whole = "\n".join(data)
    assert f'<hx-partial hx-target="#turn-{turn.group(1)}" hx-swap="outerHTML">' in whole
    assert "Proposed change" in whole and 'id="node-log"' in whole


def test_a_rejected_proposal_leaves_the_draft_empty(demo: tuple[TestClient, Runtime]) -> None:
    client, _ = demo
    session = new_session(client)
    html = client.post(f"/ui/builder/{session}/messages", data={"text": REQUEST}, headers=HTMX).text
    answer = client.post(f"/ui/builder/{session}/changes/{change_id(html)}/reject", headers=HTMX)
    assert answer.status_code == 200 and "Rejected: the draft is unchanged." in answer.text
    assert "No draft yet" in answer.text and "Save and run" not in answer.text
    assert "Proposed change" not in client.get(f"/ui/builder?session={session}").text


def test_save_and_run_opens_the_run_form(demo: tuple[TestClient, Runtime]) -> None:
    client, _ = demo
    session = new_session(client)
    html = client.post(f"/ui/builder/{session}/messages", data={"text": REQUEST}, headers=HTMX).text
    # saving before anything is accepted is refused
    assert client.post(f"/ui/builder/{session}/save", headers=HTMX).status_code == 409
    client.post(f"/ui/builder/{session}/changes/{change_id(html)}/accept", headers=HTMX)
    answer = client.post(f"/ui/builder/{session}/save", headers=HTMX)
    flow_id = "when-i-run-it-set"
    assert answer.headers["HX-Redirect"] == f"/ui/runs/new?flow={flow_id}"
    assert client.get(answer.headers["HX-Redirect"]).status_code == 200

    # a session started from the saved flow edits its latest version
    again = client.get(f"/ui/builder?flow={flow_id}")
    assert again.status_code == 303
    assert 'id="node-set"' in client.get(again.headers["location"]).text
    assert client.get("/ui/builder?flow=nope").status_code == 404


def test_another_owners_session_is_not_found(tmp_path: Path) -> None:
    with signed_ui(tmp_path) as ui:
        app = ui.client.app
        app.state.ui_jules = UiJules(ui.runtime, Settings())  # type: ignore[attr-defined]
        csrf = ui.sign_in("ana@example.com")
        session = new_session(ui.client)
        headers = {**HTMX, "X-CSRF-Token": csrf}
        html = ui.client.post(f"/ui/builder/{session}/messages", data={"text": REQUEST}, headers=headers).text
        change = change_id(html)

        ui.client.cookies.clear()
        rui = {**HTMX, "X-CSRF-Token": ui.sign_in("rui@example.com")}
        assert ui.client.get(f"/ui/builder?session={session}").status_code == 404
        said = ui.client.post(f"/ui/builder/{session}/messages", data={"text": "hi"}, headers=rui)
        assert said.status_code == 404
        assert ui.client.post(f"/ui/builder/{session}/changes/{change}/accept", headers=rui).status_code == 404
        assert ui.client.post(f"/ui/builder/{session}/save", headers=rui).status_code == 404


def test_changes_need_the_csrf_token_and_the_write_scope(tmp_path: Path) -> None:
    with signed_ui(tmp_path) as ui:
        app = ui.client.app
        app.state.ui_jules = UiJules(ui.runtime, Settings())  # type: ignore[attr-defined]
        csrf = ui.sign_in("ana@example.com")
        session = new_session(ui.client)
        url = f"/ui/builder/{session}/messages"
        assert ui.client.post(url, data={"text": REQUEST}, headers=HTMX).status_code == 403
        html = ui.client.post(url, data={"text": REQUEST, "csrf": csrf}, headers=HTMX).text
        change = change_id(html)
        assert ui.client.post(f"/ui/builder/{session}/changes/{change}/accept", headers=HTMX).status_code == 403
        assert ui.client.post(f"/ui/builder/{session}/save", headers=HTMX).status_code == 403

    with running("embedded", tmp_path / "reader") as rt:
        app = create_app(rt, settings=Settings(open_local=True, bind="127.0.0.1:8080"))
        app.state.ui_jules = UiJules(rt, Settings())
        app.state.ui_visitor = lambda request: Visitor(LOCAL_OWNER, "reader", "read", None)
        with TestClient(app, follow_redirects=False) as client:
            assert client.get("/ui/builder").status_code == 403
            session = UiJules(rt, Settings()).start(owner=LOCAL_OWNER, user="t")
            assert client.get(f"/ui/builder?session={session}").status_code == 200
            refused = client.post(f"/ui/builder/{session}/messages", data={"text": REQUEST}, headers=HTMX)
            assert refused.status_code == 403 and "read-only" in refused.text


def test_a_plain_form_post_answers_with_the_page_again(tmp_path: Path) -> None:
    with signed_ui(tmp_path) as ui:
        ui.client.app.state.ui_jules = UiJules(ui.runtime, Settings())  # type: ignore[attr-defined]
        csrf = ui.sign_in("ana@example.com")
        session = new_session(ui.client)
        answer = ui.client.post(f"/ui/builder/{session}/messages", data={"text": REQUEST, "csrf": csrf})
        assert answer.status_code == 303 and answer.headers["location"] == f"/ui/builder?session={session}"
        assert "Proposed change" in ui.client.get(answer.headers["location"]).text
