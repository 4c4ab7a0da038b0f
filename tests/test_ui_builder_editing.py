"""The Builder's hand edits without a browser: the first screen with the demo flow, the YAML tab's inline located
problems and Apply, a node's panel (its form from the type's schema) and Apply, each recorded as the user's
change; the refusals (CSRF, read-only, a pending proposal, another owner)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.settings import Settings
from api.ui_jules import BUILDER_DEMO, UiJules
from copilot.chat import Jules
from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER
from tests.test_ui_builder import HTMX, change_id
from tests.ui_helpers import Ui, builder_demo
from tests.ui_helpers import ui as signed_ui


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    with builder_demo(tmp_path) as value:
        yield value


def demo_session(client: TestClient) -> str:
    """The first screen: the server's address → the Builder on the demo flow."""
    home = client.get("/")
    assert home.status_code == 307 and home.headers["location"] == "/ui/builder?demo=1"
    started = client.get(home.headers["location"])
    assert started.status_code == 303, started.text
    found = re.fullmatch(r"/ui/builder\?session=(\w+)", started.headers["location"])
    assert found, started.headers["location"]
    return found.group(1)


def draft_of(rt: Runtime, session: str) -> str:
    return Jules(rt.db, rt.orchestrator.registry).session(session, owner=LOCAL_OWNER).draft


def test_the_first_screen_is_the_demo_flow_ready_to_run_with_a_suggested_edit(
    demo: tuple[TestClient, Runtime],
) -> None:
    client, rt = demo
    session = demo_session(client)
    html = client.get(f"/ui/builder?session={session}").text

    # Then the demo flow is the draft: drawn, editable, with Save and run, and a follow-up sentence to try
    assert draft_of(rt, session) == (Path("flows") / BUILDER_DEMO).read_text("utf-8")
    for node in ("check", "line", "totals", "manager", "book"):
        assert f'id="node-{node}"' in html
    assert ">Save and run</button>" in html and 'id="yaml-edit"' in html
    assert "Run it every weekday at 9:00 Lisbon time" in html
    assert f'data-nodes="/ui/builder/{session}/nodes/"' in html

    # When it is saved, then the browser goes to the run form of the stored flow
    saved = client.post(f"/ui/builder/{session}/save", headers=HTMX)
    assert saved.status_code == 204 and saved.headers["HX-Redirect"] == "/ui/runs/new?flow=expense-approval"


def test_the_yaml_tab_locates_problems_as_the_user_types_and_applies_a_valid_edit(
    demo: tuple[TestClient, Runtime],
) -> None:
    client, rt = demo
    session = demo_session(client)
    draft = draft_of(rt, session)

    # When the text names a node that does not exist, then the check says where and how to fix it
    broken = draft.replace("needs: [check]", "needs: [chek]")
    html = client.post(f"/ui/builder/{session}/check", data={"yaml": broken}, headers=HTMX).text
    line = next(i for i, text in enumerate(broken.splitlines(), 1) if "needs: [chek]" in text)
    assert "1 problem</strong>" in html and f'data-line="{line}"' in html
    assert "<code>node totals</code>" in html and "chek" in html and "Fix:" in html

    # When the YAML does not parse, then the problem is located too
    html = client.post(f"/ui/builder/{session}/check", data={"yaml": "nodes: [\n"}, headers=HTMX).text
    assert "problem" in html and 'data-line="' in html

    # When Apply is pressed with problems, then nothing changes (422) and the problems show
    answer = client.post(f"/ui/builder/{session}/draft", data={"yaml": broken}, headers=HTMX)
    assert answer.status_code == 422 and '<hx-partial hx-target="#yaml-problems"' in answer.text
    assert draft_of(rt, session) == draft

    # When a valid edit is checked, then it says so; when it is applied, then it is the draft, drawn again
    edited = draft.replace("concurrency: 4", "concurrency: 2")
    assert "Valid FluxGraph" in client.post(f"/ui/builder/{session}/check", data={"yaml": edited}, headers=HTMX).text
    answer = client.post(f"/ui/builder/{session}/draft", data={"yaml": edited}, headers=HTMX)
    assert answer.status_code == 200 and "The draft is now your YAML." in answer.text
    assert '<hx-partial hx-target="#pane"' in answer.text and 'id="node-check"' in answer.text
    assert draft_of(rt, session) == edited  # the user's text as written, comments kept

    # Then the change is recorded as the user's, accepted, with its diff
    changes = Jules(rt.db, rt.orchestrator.registry).session(session, owner=LOCAL_OWNER).changes
    assert changes[-1].status == "accepted" and changes[-1].planner == "hand"
    assert "-    concurrency: 4" in changes[-1].diff and "+    concurrency: 2" in changes[-1].diff


def test_a_node_panel_is_a_form_from_the_type_schema_and_applies_in_place(demo: tuple[TestClient, Runtime]) -> None:
    client, rt = demo
    session = demo_session(client)

    # When the approval node is opened, then its parameters come from the type's schema, with the common fields
    html = client.get(f"/ui/builder/{session}/nodes/manager").text
    assert "Node <code>manager</code>" in html and "approval" in html
    assert '<label for="nf-with-message">message' in html and 'name="with.approvers"' in html
    assert 'name="timeout" value="2d"' in html and 'name="retry.max_attempts"' in html
    assert "{{ inputs.employee }} spent" in html  # expressions are shown as written
    assert client.get(f"/ui/builder/{session}/nodes/nope").status_code == 404

    # When a timeout and a parameter are set, then the draft has them, in place: comments and layout kept
    form = {"timeout": "3d", "with.message": "Approve?"}
    answer = client.post(f"/ui/builder/{session}/nodes/manager", data=form, headers=HTMX)
    assert answer.status_code == 200, answer.text
    assert "Node manager changed" in answer.text
    draft = draft_of(rt, session)
    assert "    timeout: 3d\n" in draft and "      message: Approve?\n" in draft
    assert "# Runs today, with nothing to configure" in draft  # the file's comments survive the panel

    # When a retry is given to a node without one, then the node has it
    form = {"retry.max_attempts": "2", "retry.backoff": "constant"}
    assert client.post(f"/ui/builder/{session}/nodes/book", data=form, headers=HTMX).status_code == 200
    draft = draft_of(rt, session)
    assert "max_attempts: 2" in draft and "backoff: constant" in draft and "# Runs today" in draft

    # When a node's edit does not validate, then the validator's located message shows and nothing changes
    answer = client.post(f"/ui/builder/{session}/nodes/manager", data={"retry.max_attempts": "3"}, headers=HTMX)
    assert answer.status_code == 422 and "`retry` has no effect on an approval node" in answer.text
    assert draft_of(rt, session) == draft

    # When a value cannot be what its field holds, then the panel says which field and nothing changes
    answer = client.post(f"/ui/builder/{session}/nodes/book", data={"retry.max_attempts": "two"}, headers=HTMX)
    assert answer.status_code == 422 and "retry.max_attempts: &#39;two&#39; is not a number" in answer.text
    assert 'class="field field-invalid"' in answer.text and draft_of(rt, session) == draft

    answer = client.post(f"/ui/builder/{session}/nodes/totals", data={"on_error": "nowhere"}, headers=HTMX)
    assert answer.status_code == 422 and "nowhere" in answer.text and draft_of(rt, session) == draft

    # When a field is emptied, then it is removed from the node
    answer = client.post(f"/ui/builder/{session}/nodes/manager", data={"timeout": ""}, headers=HTMX)
    assert answer.status_code == 200 and "timeout removed" in answer.text
    assert "timeout: 3d" not in draft_of(rt, session)


def test_hand_edits_wait_for_a_pending_proposal_to_be_decided(demo: tuple[TestClient, Runtime]) -> None:
    client, _ = demo
    session = demo_session(client)
    html = client.post(f"/ui/builder/{session}/messages", data={"text": "add error handling"}, headers=HTMX).text
    change = change_id(html)

    # Then, while a proposal waits, the YAML is read-only and the panel cannot apply
    page = client.get(f"/ui/builder?session={session}").text
    assert 'id="yaml-edit"' not in page and "Accept or reject the proposal to edit the YAML." in page
    panel = client.get(f"/ui/builder/{session}/nodes/manager").text
    assert "Decide the pending proposal first" in panel and "Apply to the draft" not in panel

    # When it is rejected, then editing is back
    client.post(f"/ui/builder/{session}/changes/{change}/reject", headers=HTMX)
    assert 'id="yaml-edit"' in client.get(f"/ui/builder?session={session}").text


@pytest.fixture
def u(tmp_path: Path) -> Iterator[Ui]:
    with signed_ui(tmp_path) as value:
        value.client.app.state.ui_jules = UiJules(value.runtime, Settings())  # type: ignore[attr-defined]
        yield value


def test_edits_need_the_csrf_token_and_the_owner(u: Ui) -> None:
    csrf = u.sign_in("ana@example.com")
    started = u.client.get("/ui/builder?demo=1")
    session = started.headers["location"].split("=")[-1]
    draft = u.client.get(f"/ui/builder?session={session}").text
    assert 'id="yaml-edit"' in draft
    text = (Path("flows") / BUILDER_DEMO).read_text("utf-8").replace("concurrency: 4", "concurrency: 3")

    # Without the session's CSRF token, a hand edit is refused
    assert u.client.post(f"/ui/builder/{session}/draft", data={"yaml": text}).status_code == 403
    assert u.client.post(f"/ui/builder/{session}/nodes/manager", data={"timeout": "1d"}).status_code == 403
    assert u.client.post(f"/ui/builder/{session}/draft", data={"yaml": text, "csrf": csrf}).status_code == 200

    # Another owner does not find the session
    u.client.post("/ui/logout", data={"csrf": csrf})
    rui = u.sign_in("rui@example.com")
    assert u.client.get(f"/ui/builder/{session}/nodes/manager").status_code == 404
    assert u.client.post(f"/ui/builder/{session}/draft", data={"yaml": text, "csrf": rui}).status_code == 404


def test_messages_to_jules_share_the_owners_co_pilot_rate_limit(demo: tuple[TestClient, Runtime]) -> None:
    client, _ = demo
    app = client.app
    assert isinstance(app, FastAPI)
    app.state.settings = Settings(open_local=True, bind="127.0.0.1:8080", copilot_rate_per_minute=1)
    session = demo_session(client)
    first = client.post(f"/ui/builder/{session}/messages", data={"text": "add error handling"}, headers=HTMX)
    assert first.status_code == 200
    second = client.post(f"/ui/builder/{session}/messages", data={"text": "make it cheaper"}, headers=HTMX)
    assert second.status_code == 429 and "too many messages to Jules" in second.text
    assert int(second.headers["Retry-After"]) >= 1
