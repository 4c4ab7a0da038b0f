"""Runs over HTTP: start (input checked, located errors), list with filters and a cursor, show with steps, step
inputs and outputs, and the actions (cancel, pause, resume, approve, reject, re-run on a newer version) with the
refusals that say why. A run is its flow owner's: another owner's run is not found, and scopes decide who acts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api_helpers import BACKENDS, Api, api
from tests.runtime_helpers import GATED, flow

DOUBLE = flow(
    """
    fluxgraph: 1
    id: double
    inputs:
      type: object
      properties:
        n: {type: integer, minimum: 0}
      required: [n]
    nodes:
      - id: twice
        type: data.set
        with: {value: "{{ inputs.n * 2 }}"}
      - id: big
        type: test.big
        needs: [twice]
        with: {size: 70000}
    outputs:
      value: "{{ nodes.twice.output.value }}"
    """
)
SLOW = flow(
    """
    fluxgraph: 1
    id: slow
    nodes:
      - {id: wait, type: delay, with: {duration: 800ms}}
      - {id: after, type: data.set, needs: [wait], with: {done: true}}
    """
)
BROKEN = flow(
    """
    fluxgraph: 1
    id: fragile
    nodes:
      - {id: fetch, type: data.set, with: {rows: 3}}
      - {id: store, type: test.flaky, needs: [fetch], with: {succeed_on: 0}}
    """
)
FIXED = BROKEN.replace(
    "type: test.flaky, needs: [fetch], with: {succeed_on: 0}", "type: data.set, needs: [fetch], with: {ok: true}"
)


@pytest.fixture(params=BACKENDS)
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    with api(request.param, tmp_path) as value:
        yield value


def save(a: Api, text: str, owner: str | None = None) -> str:
    return a.runtime.orchestrator.save_flow(text, "test.yaml", owner=owner or a.owner)[1]


def start(a: Api, flow_id: str, body: dict[str, object] | None = None, who: str = "write") -> str:
    started = a.call("POST", f"/api/v1/flows/{flow_id}/runs", who, json=body or {})
    assert started.status_code == 201, started.text
    return str(started.json()["run_id"])


def settle(a: Api, run_id: str) -> str:
    return str(a.runtime.wait(run_id, 30))


def test_a_run_starts_with_checked_input_and_shows_its_steps_and_payloads(a: Api) -> None:
    # Given a flow whose input needs a whole number n
    save(a, DOUBLE)
    # When the input is wrong, Then nothing starts and the error says where
    bad = a.call("POST", "/api/v1/flows/double/runs", "write", json={"input": {"n": "two"}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "run.input_invalid"
    assert bad.json()["error"]["location"][0]["field"] == "input.n"
    assert a.call("POST", "/api/v1/flows/double/runs", "write", json={"input": [1]}).status_code == 422
    raw = {"content": b'{"input": {"n": 1e999}}', "headers": {"Content-Type": "application/json"}}  # not JSON's
    huge = a.call("POST", "/api/v1/flows/double/runs", "write", **raw)
    assert huge.status_code == 422 and huge.json()["error"]["location"][0]["field"] == "input.n", huge.text
    typo = a.call("POST", "/api/v1/flows/double/runs", "write", json={"inputs": {"n": 2}})  # input, misspelt
    assert typo.status_code == 422 and typo.json()["error"]["message"] == "body.inputs: unknown field 'inputs'"
    broken = a.call("POST", "/api/v1/flows/double/runs", "write", content=b'{"input":', headers=raw["headers"])
    assert broken.status_code == 422 and "not JSON at character 9" in broken.json()["error"]["message"]
    assert a.call("POST", "/api/v1/flows/nope/runs", "write", json={}).json()["error"]["code"] == "flow.not_found"
    wrong_version = a.call("POST", "/api/v1/flows/double/runs", "write", json={"version": "v-nope"})
    assert wrong_version.status_code == 422 and wrong_version.json()["error"]["location"][0]["field"] == "version"
    # When it is right, Then the run starts and finishes
    run_id = start(a, "double", {"input": {"n": 21}})
    assert settle(a, run_id) == "succeeded"
    shown = a.call("GET", f"/api/v1/runs/{run_id}", "read").json()
    assert shown["status"] == "succeeded" and shown["outputs"] == {"value": 42} and shown["input"] == {"n": 21}
    assert [s["key"] for s in shown["steps"]] == ["twice", "big"] and shown["approvals"] == []
    twice = shown["steps"][0]
    assert twice["status"] == "succeeded" and twice["duration_ms"] is not None and twice["output_preview"]
    # And a step's output comes whole, a large one from the blob store
    out = a.call("GET", f"/api/v1/runs/{run_id}/steps/twice/output", "read").json()
    assert out == {"run_id": run_id, "step": "twice", "attempt": 1, "value": {"value": 42}, "truncated": False}
    big = a.call("GET", f"/api/v1/runs/{run_id}/steps/big/output", "read").json()
    assert len(big["value"]["blob"]) == 70000
    # And its input as kept (a preview with secrets blanked; whole here)
    given = a.call("GET", f"/api/v1/runs/{run_id}/steps/twice/input", "read").json()
    assert given["value"] == {"value": 42} and given["truncated"] is False
    missing = a.call("GET", f"/api/v1/runs/{run_id}/steps/nope/output", "read")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "step.not_found"
    assert a.call("GET", f"/api/v1/runs/{run_id}/steps/nope/input", "read").status_code == 404


def test_runs_are_listed_newest_first_with_filters_and_a_cursor(a: Api) -> None:
    save(a, DOUBLE)
    save(a, BROKEN)
    ids = [start(a, "double", {"input": {"n": i}}) for i in range(3)]
    failed = start(a, "fragile")
    for run_id in [*ids, failed]:
        settle(a, run_id)
    first = a.call("GET", "/api/v1/runs?limit=2&flow=double", "read").json()
    assert [r["id"] for r in first["items"]] == ids[::-1][:2] and first["next_cursor"]
    rest = a.call("GET", f"/api/v1/runs?limit=2&flow=double&cursor={first['next_cursor']}", "read").json()
    assert [r["id"] for r in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    only_failed = a.call("GET", "/api/v1/runs?status=failed", "read").json()["items"]
    assert [r["id"] for r in only_failed] == [failed] and only_failed[0]["error"]["code"] == "test.flaky"
    created = a.call("GET", f"/api/v1/runs/{ids[1]}", "read").json()["created_at"]
    since = a.call("GET", "/api/v1/runs", "read", params={"since": created, "flow": "double"}).json()["items"]
    until = a.call("GET", "/api/v1/runs", "read", params={"until": created, "flow": "double"}).json()["items"]
    assert [r["id"] for r in since] == ids[:0:-1] and [r["id"] for r in until] == [ids[0]]
    assert a.call("GET", "/api/v1/runs?status=exploded", "read").status_code == 422
    assert a.call("GET", "/api/v1/runs?since=2026-01-01T00:00:00", "read").json()["error"]["code"] == "request.invalid"
    bad = a.call("GET", "/api/v1/runs?cursor=not-a-cursor", "read")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "request.invalid"


def test_another_owners_runs_do_not_exist_and_scopes_decide_who_acts(a: Api) -> None:
    # Given a run of each owner
    save(a, GATED)
    started = a.call("POST", "/api/v1/flows/gated/runs", "write")  # no body: a flow that needs no input
    assert started.status_code == 201, started.text
    mine = started.json()["run_id"]
    save(a, BROKEN, owner=a.other)
    theirs = start(a, "fragile", who="other")
    settle(a, mine)
    settle(a, theirs)
    # Then the other owner's run is not there for me, in any route
    for path in ("", "/steps/fetch/output", "/steps/fetch/input"):
        gone = a.call("GET", f"/api/v1/runs/{theirs}{path}", "read")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "run.not_found"
    for action in ("cancel", "pause", "resume", "approve", "reject", "rerun"):
        assert a.call("POST", f"/api/v1/runs/{theirs}/{action}", "write").status_code == 404
    assert a.call("POST", "/api/v1/flows/fragile/runs", "write", json={}).status_code == 404
    assert [r["id"] for r in a.call("GET", "/api/v1/runs", "read").json()["items"]] == [mine]
    assert [r["id"] for r in a.call("GET", "/api/v1/runs", "other").json()["items"]] == [theirs]
    # And a read token reads but does not act; without a token nothing is answered
    refused = a.call("POST", f"/api/v1/runs/{mine}/approve", "read")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.forbidden"
    assert a.call("POST", "/api/v1/flows/gated/runs", "read", json={}).status_code == 403
    assert a.call("GET", f"/api/v1/runs/{mine}", "anonymous").status_code == 401
    assert a.call("GET", "/api/v1/runs", "anonymous").status_code == 401
    assert a.call("GET", f"/api/v1/runs/{mine}", "read").json()["status"] == "awaiting_approval"


def test_an_approval_is_approved_or_rejected_with_a_comment(a: Api) -> None:
    save(a, GATED)
    yes, no = start(a, "gated"), start(a, "gated")
    assert settle(a, yes) == settle(a, no) == "awaiting_approval"
    waiting = a.call("GET", f"/api/v1/runs/{yes}", "read").json()
    assert waiting["approvals"] == [{"step": "gate", "message": "Pay 120?", "approvers": []}]
    wrong = a.call("POST", f"/api/v1/runs/{yes}/approve", "write", json={"step": "pay"})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "run.refused"
    done = a.call("POST", f"/api/v1/runs/{yes}/approve", "write", json={"comment": "within budget"})
    assert done.status_code == 200 and done.json()["step"] == "gate"
    assert settle(a, yes) == "succeeded"
    rejected = a.call("POST", f"/api/v1/runs/{no}/reject", "write", json={"step": "gate", "comment": "too much"})
    assert rejected.status_code == 200
    assert settle(a, no) == "failed"
    gate = next(s for s in a.call("GET", f"/api/v1/runs/{no}", "read").json()["steps"] if s["key"] == "gate")
    assert gate["error"]["code"] == "approval.rejected" and "too much" in gate["error"]["message"]
    again = a.call("POST", f"/api/v1/runs/{yes}/approve", "write")
    assert again.status_code == 409 and again.json()["error"]["code"] == "run.no_pending_approval"
    actions = [e["action"] for e in a.call("GET", "/api/v1/audit", "read").json()["items"]]
    assert actions[:2] == ["run.reject", "run.approve"]


def test_a_run_is_paused_resumed_and_cancelled_and_refused_when_that_does_not_apply(a: Api) -> None:
    save(a, SLOW)
    run_id = start(a, "slow")
    assert a.call("POST", f"/api/v1/runs/{run_id}/pause", "write").status_code == 200
    twice = a.call("POST", f"/api/v1/runs/{run_id}/pause", "write")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "run.paused"
    assert settle(a, run_id) == "paused"  # the delay ended; the next step waits for the resume
    assert a.call("POST", f"/api/v1/runs/{run_id}/resume", "write").status_code == 200
    assert settle(a, run_id) == "succeeded"
    for action, code in (("resume", "run.not_paused"), ("cancel", "run.finished"), ("pause", "run.finished")):
        refused = a.call("POST", f"/api/v1/runs/{run_id}/{action}", "write")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == code, action
    other = start(a, "slow")
    cancelled = a.call("POST", f"/api/v1/runs/{other}/cancel", "write")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_a_failed_run_reruns_from_its_failed_step_on_a_newer_version(a: Api) -> None:
    save(a, BROKEN)
    run_id = start(a, "fragile")
    assert settle(a, run_id) == "failed"
    nowhere = a.call("POST", f"/api/v1/runs/{run_id}/rerun", "write", json={"from_step": "nope"})
    assert nowhere.status_code == 422 and nowhere.json()["error"]["code"] == "run.from_step_invalid"
    alien = a.call("POST", f"/api/v1/runs/{run_id}/rerun", "write", json={"version": save(a, GATED)})
    assert alien.status_code == 422 and alien.json()["error"]["code"] == "run.version_invalid"
    fixed = save(a, FIXED)
    again = a.call("POST", f"/api/v1/runs/{run_id}/rerun", "write", json={"from_step": "store", "version": "latest"})
    assert again.status_code == 200, again.text
    assert settle(a, run_id) == "succeeded"
    shown = a.call("GET", f"/api/v1/runs/{run_id}", "read").json()
    assert shown["attempt"] == 2 and shown["version_id"] == fixed
    steps = {s["key"]: s for s in shown["steps"]}
    assert steps["fetch"]["reused"] is True and steps["store"]["status"] == "succeeded"
    refused = a.call("POST", f"/api/v1/runs/{run_id}/rerun", "write")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "run.not_rerunnable"

    # A succeeded run re-runs from a chosen step: that step and what needs it run again, the rest is kept
    again = a.call("POST", f"/api/v1/runs/{run_id}/rerun", "write", json={"from_step": "store"})
    assert again.status_code == 200, again.text
    assert settle(a, run_id) == "succeeded"
    shown = a.call("GET", f"/api/v1/runs/{run_id}", "read").json()
    steps = {s["key"]: s for s in shown["steps"]}
    assert shown["attempt"] == 3 and steps["fetch"]["reused"] is True and steps["store"]["reused"] is False
