"""Jules over HTTP (``/api/v1/copilot``): a turn streamed as Server-Sent Events (tokens, then the proposal), the
same turn as JSON, accept / reject / save with their audit entries, sessions invisible to other owners, scopes,
the per-owner rate limit, and the one-shot tools (plan, estimate, optimise, advice), with the offline planner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.settings import Settings
from engine.dsl.validator import load_flow
from tests.api_helpers import BACKENDS, Api, api
from tests.test_api_account import walk

REQUEST = "Every Monday at 8 fetch https://api.example.com/orders and post them to #sales on Slack"
SESSIONS = "/api/v1/copilot/sessions"
JSON = {"Accept": "application/json"}
LLM_FLOW = """\
fluxgraph: 1
id: triage
triggers:
  - type: cron
    cron: "0 * * * *"
nodes:
  - id: fetch
    type: http.request
    with: {method: GET, url: "https://api.example.com/tickets"}
    permissions: {net: [api.example.com]}
  - id: each
    type: foreach
    needs: [fetch]
    items: "{{ nodes.fetch.output.body }}"
    do:
      - id: summarise
        type: llm.complete
        with:
          model: smart
          prompt: "Please could you kindly summarise this ticket. Make sure to be brief. Thank you! {{ item }}"
"""


@pytest.fixture
def a(tmp_path: Path) -> Iterator[Api]:
    with api("embedded", tmp_path, start=False) as value:
        yield value


def events(answer: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a text/event-stream body."""
    found = []
    for block in answer.text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            found.append((fields["event"], json.loads(fields.get("data", "null"))))
    return found


def start(a: Api, who: str = "write", **body: Any) -> str:
    made = a.call("POST", SESSIONS, who, json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def turn(a: Api, session: str, text: str, who: str = "write") -> dict[str, Any]:
    answer = a.call("POST", f"{SESSIONS}/{session}/messages", who, json={"text": text}, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return dict(answer.json())


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_turn_streams_tokens_then_the_proposal_and_the_draft_changes_on_acceptance(
    backend: str, tmp_path: Path
) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given a new session
        session = start(a, title="orders")
        # When a message is sent (SSE is the default answer)
        answer = a.call("POST", f"{SESSIONS}/{session}/messages", "write", json={"text": REQUEST})
        # Then the reply streams as tokens, then the proposal, then done
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        stream = events(answer)
        names = [name for name, _ in stream]
        assert names[-2:] == ["proposal", "done"] and set(names[:-2]) == {"token"} and len(names) > 10
        proposal = stream[-2][1]
        assert "".join(data["text"] for name, data in stream if name == "token") == proposal["reply"]
        change = proposal["change"]
        assert proposal["planner"] == "offline" and change["status"] == "pending"
        assert "C-ION" in proposal["cost"] and change["summary"][0].startswith("create the draft")
        assert set(change) >= {"id", "status", "summary", "diff"} and "+- id: call_api" in change["diff"]

        # the session shows the proposal; nothing is applied until it is accepted
        shown = a.call("GET", f"{SESSIONS}/{session}", "read").json()
        assert shown["draft"] == "" and shown["pending"] == change["id"] and shown["title"] == "orders"
        assert [m["role"] for m in shown["messages"]] == ["user", "jules"]
        decided = a.call("POST", f"{SESSIONS}/{session}/changes/{change['id']}/accept", "write")
        assert decided.status_code == 200, decided.text
        assert decided.json()["change"]["status"] == "accepted" and "call_api" in decided.json()["draft"]

        # the next turn edits the draft; the JSON answer is the same turn at once
        second = turn(a, session, "run it at 7 instead")
        assert second["change"]["summary"] == ["set triggers to cron 0 7 * * 1 (UTC)"]
        rejected = a.call("POST", f"{SESSIONS}/{session}/changes/{second['change']['id']}/reject", "write")
        assert rejected.json()["change"]["status"] == "rejected" and "0 8 * * 1" in rejected.json()["draft"]

        # saving stores the draft as the owner's flow; a new session can start from it
        saved = a.call("POST", f"{SESSIONS}/{session}/save", "write")
        assert saved.status_code == 200, saved.text
        flow_id = saved.json()["flow_id"]
        assert flow_id == "every-monday-at-8-fetch" and saved.json()["version"]
        assert a.runtime.orchestrator.owner_of(flow_id) == a.owner
        assert a.call("GET", f"{SESSIONS}/{session}", "read").json()["flow_id"] == flow_id
        again = a.call("POST", SESSIONS, "write", json={"flow_id": flow_id}).json()
        assert again["draft"] == decided.json()["draft"] and again["flow_id"] == flow_id
        listed = [s["id"] for s in a.call("GET", SESSIONS, "read").json()["items"]]
        assert listed == [again["id"], session]

        # every decision is in the audit log, with the change, its prompt and its planner
        audit = a.call("GET", "/api/v1/audit", "read").json()["items"]
        assert [e["action"] for e in audit[:3]] == ["copilot.save", "copilot.reject", "copilot.accept"]
        accepted = audit[2]
        assert accepted["target"] == change["id"]
        assert accepted["detail"] == {
            "session": session,
            "change": change["id"],
            "prompt": REQUEST,
            "planner": "offline",
            "summary": change["summary"],
            "diff": change["diff"],  # what was accepted, kept in the log itself
        }
        assert "+" in accepted["detail"]["diff"]
        assert audit[0]["target"] == flow_id and audit[0]["detail"]["version"] == saved.json()["version"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sessions_are_listed_in_pages_newest_first(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given three sessions of Ana's and one of Rui's
        made = [start(a, title=f"s{n}") for n in range(3)]
        start(a, "other")
        # When they are listed two at a time, Then every one of hers comes once, newest first
        listed, pages = walk(a, SESSIONS, "read")
        assert [s["id"] for s in listed] == made[::-1] and pages == 2
        assert [s["title"] for s in listed] == ["s2", "s1", "s0"]
        # And past what one page may hold (200) the cursor goes on: limit is bounded, not the list
        assert a.call("GET", f"{SESSIONS}?limit=201", "read").status_code == 422
        bad = a.call("GET", f"{SESSIONS}?cursor=%25", "read")
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "request.invalid"


def test_a_turn_that_proposes_nothing_ends_with_a_reply_event(a: Api) -> None:
    session = start(a)
    first = turn(a, session, REQUEST)
    a.call("POST", f"{SESSIONS}/{session}/changes/{first['change']['id']}/accept", "write")
    stream = events(a.call("POST", f"{SESSIONS}/{session}/messages", "write", json={"text": "blah"}))
    assert [name for name, _ in stream] == ["token", "reply", "done"]
    assert stream[1][1]["change"] is None and "could not turn that into a change" in stream[1][1]["reply"]


def test_decisions_that_no_longer_apply_are_refused(a: Api) -> None:
    session = start(a)
    older = turn(a, session, REQUEST)["change"]["id"]
    newer = turn(a, session, REQUEST)["change"]["id"]
    stale = a.call("POST", f"{SESSIONS}/{session}/changes/{older}/accept", "write")
    assert stale.status_code == 409 and "superseded" in stale.json()["error"]["message"]
    missing = a.call("POST", f"{SESSIONS}/{session}/changes/nope/accept", "write")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "copilot.change_not_found"
    empty = a.call("POST", f"{SESSIONS}/{session}/save", "write")
    assert empty.status_code == 409 and empty.json()["error"]["code"] == "copilot.draft_empty"
    blank = a.call("POST", f"{SESSIONS}/{session}/messages", "write", json={"text": "   "}, headers=JSON)
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "copilot.message_invalid"
    assert a.call("POST", f"{SESSIONS}/{session}/changes/{newer}/accept", "write").status_code == 200


def test_another_owners_sessions_do_not_exist_for_them(a: Api) -> None:
    # Given Ana's session with a pending proposal, and her saved flow
    session = start(a)
    change = turn(a, session, REQUEST)["change"]["id"]
    a.call("POST", f"{SESSIONS}/{session}/changes/{change}/accept", "write")
    flow_id = a.call("POST", f"{SESSIONS}/{session}/save", "write").json()["flow_id"]
    change = turn(a, session, "run it at 7 instead")["change"]["id"]
    # When Rui (another owner, admin scope) reaches for them, Then everything answers 404
    for method, path, body in [
        ("GET", f"{SESSIONS}/{session}", None),
        ("POST", f"{SESSIONS}/{session}/messages", {"text": "run it at 6 instead"}),
        ("POST", f"{SESSIONS}/{session}/changes/{change}/accept", None),
        ("POST", f"{SESSIONS}/{session}/changes/{change}/reject", None),
        ("POST", f"{SESSIONS}/{session}/save", None),
        ("POST", SESSIONS, {"flow_id": flow_id}),
    ]:
        refused = a.call(method, path, "other", json=body)
        assert refused.status_code == 404, (method, path, refused.text)
        assert refused.json()["error"]["code"] in ("copilot.session_not_found", "flow.not_found")
    assert a.call("GET", SESSIONS, "other").json()["items"] == []
    # and nothing of Ana's changed
    shown = a.call("GET", f"{SESSIONS}/{session}", "read").json()
    assert shown["pending"] == change and len(shown["messages"]) == 4


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", SESSIONS, {}),
        ("POST", f"{SESSIONS}/S/messages", {"text": "hello"}),
        ("POST", f"{SESSIONS}/S/changes/C/accept", None),
        ("POST", f"{SESSIONS}/S/changes/C/reject", None),
        ("POST", f"{SESSIONS}/S/save", None),
        ("POST", "/api/v1/copilot/plan", {"text": "email me the weather"}),
    ],
)
def test_changes_need_the_write_scope(a: Api, method: str, path: str, body: dict[str, Any] | None) -> None:
    assert a.call(method, path, "anonymous", json=body).status_code == 401
    refused = a.call(method, path, "read", json=body)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.forbidden"


def test_reading_needs_a_token_and_the_read_scope_is_enough(a: Api) -> None:
    session = start(a)
    assert a.call("GET", SESSIONS, "anonymous").status_code == 401
    assert a.call("GET", f"{SESSIONS}/{session}", "anonymous").status_code == 401
    assert a.call("GET", f"{SESSIONS}/{session}", "read").status_code == 200
    estimate = a.call("POST", "/api/v1/copilot/estimate", "read", json={"yaml": LLM_FLOW})
    assert estimate.status_code == 200, estimate.text


def test_copilot_calls_are_rate_limited_per_owner(a: Api) -> None:
    # Given a limit of 2 co-pilot calls a minute
    a.client.app.state.settings = Settings(copilot_rate_per_minute=2)  # type: ignore[attr-defined]
    body = {"yaml": LLM_FLOW}
    # When Ana makes 3, Then the third is refused with 429 and how long to wait
    assert [a.call("POST", "/api/v1/copilot/estimate", "read", json=body).status_code for _ in range(2)] == [200, 200]
    refused = a.call("POST", "/api/v1/copilot/advice", "write", json=body)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "request.rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    session = start(a)
    assert a.call("POST", f"{SESSIONS}/{session}/messages", json={"text": REQUEST}).status_code == 429
    # and another owner has their own allowance
    assert a.call("POST", "/api/v1/copilot/estimate", "other", json=body).status_code == 200


def test_plan_drafts_a_valid_flow_and_says_which_planner(a: Api) -> None:
    answer = a.call("POST", "/api/v1/copilot/plan", "write", json={"text": REQUEST})
    assert answer.status_code == 200, answer.text
    plan = answer.json()
    assert plan["valid"] and plan["planner"] == "offline" and "C-ION" in plan["cost"]
    flow = load_flow(plan["yaml"], registry=a.runtime.orchestrator.registry)
    assert flow.id == "every-monday-at-8-fetch"
    named = a.call("POST", "/api/v1/copilot/plan", "write", json={"text": REQUEST, "flow_id": "orders"}).json()
    assert yaml.safe_load(named["yaml"])["id"] == "orders"
    too_long = a.call("POST", "/api/v1/copilot/plan", "write", json={"text": "x" * 4001})
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "request.invalid"


def test_estimate_forecasts_per_node_run_and_month_with_cheaper_alternatives(a: Api) -> None:
    answer = a.call("POST", "/api/v1/copilot/estimate", "read", json={"yaml": LLM_FLOW, "items": 20})
    assert answer.status_code == 200, answer.text
    cost = answer.json()
    by_node = {n["node_id"]: n for n in cost["nodes"]}
    assert by_node["summarise"]["per_item"] and by_node["summarise"]["cion"] > 0 and by_node["summarise"]["basis"]
    assert cost["items"] == 20 and cost["per_run"] == pytest.approx(cost["fixed"] + 20 * cost["per_item"])
    assert cost["runs_per_month"] == 720 and cost["per_month"] == pytest.approx(cost["per_run"] * 720)
    assert "C-ION a month" in cost["summary"]
    assert cost["alternatives"] and all(alt["saves_per_run"] > 0 for alt in cost["alternatives"])
    assert any(c["field"] == "with.model" for alt in cost["alternatives"] for c in alt["changes"])


def test_optimise_shortens_prompts_with_the_token_and_cion_difference(a: Api) -> None:
    answer = a.call("POST", "/api/v1/copilot/optimise", "read", json={"yaml": LLM_FLOW})
    assert answer.status_code == 200, answer.text
    tuned = answer.json()
    node = tuned["nodes"][0]
    assert node["node_id"] == "summarise" and node["saved_tokens"] > 0 and node["cion_per_run"] > 0
    rewrite = node["rewrites"][0]
    assert rewrite["original_tokens"] - rewrite["rewritten_tokens"] == rewrite["saved_tokens"]
    assert "please" not in node["with"]["prompt"].lower() and "{{ item }}" in node["with"]["prompt"]
    assert "politeness" in rewrite["rules"] and tuned["saved_tokens"] == node["saved_tokens"]
    not_llm = a.call("POST", "/api/v1/copilot/optimise", "read", json={"yaml": LLM_FLOW, "node_id": "fetch"})
    assert not_llm.status_code == 422 and not_llm.json()["error"]["code"] == "copilot.node_invalid"


def test_advice_finds_missing_error_handling_and_applies_it(a: Api) -> None:
    answer = a.call("POST", "/api/v1/copilot/advice", "read", json={"yaml": LLM_FLOW})
    assert answer.status_code == 200, answer.text
    advice = answer.json()
    kinds = {(f["kind"], f["node_id"]) for f in advice["findings"]}
    assert {("retry", "fetch"), ("timeout", "fetch"), ("on_failure", None), ("budget", None)} <= kinds
    applied = load_flow(advice["applied"], registry=a.runtime.orchestrator.registry)
    assert applied.on_failure and applied.budget is not None


def test_an_invalid_flow_is_refused_with_where_it_is_wrong(a: Api) -> None:
    answer = a.call("POST", "/api/v1/copilot/estimate", "read", json={"yaml": "fluxgraph: 1\nid: x\nnodes: []\n"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "flow.invalid" and error["location"]["issues"]
