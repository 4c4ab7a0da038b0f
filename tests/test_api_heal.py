"""Self-healing over HTTP (``/api/v1/runs/{id}/heal``, ``…/heal/apply``): a run that failed on an expression's typo
is diagnosed by the rules, its fix proved by replay and applied, and the run resumes from the failed step to
success (on SQLite and PostgreSQL); a person's action (a secret) then resume as it is; the refusals: another
owner's run, a read token, a run with no failed step, a fix that changed since it was reviewed, the rate limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from api.settings import Settings
from evals.heal import Upstream
from tests.api_helpers import BACKENDS, Api, api
from tests.runtime_helpers import TYPO, TYPO_INPUT, flow, one_step_flow

SECRET = flow(
    """
    fluxgraph: 1
    id: shop-report
    secrets: [shop_token]
    nodes:
      - {id: prepare, type: data.set, with: {rows: 3}}
      - id: report
        type: text.template
        needs: [prepare]
        with: {template: "{{ nodes.prepare.output.rows }} rows, token {{ secrets.shop_token }}"}
    """
)
QUICK = one_step_flow("quick")


@pytest.fixture(params=BACKENDS)
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    with api(request.param, tmp_path) as value:
        yield value


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Api]:
    with api("embedded", tmp_path) as value:
        yield value


def failed_run(a: Api, text: str, input: dict[str, str] | None = None) -> str:
    saved = a.call("POST", "/api/v1/flows", "write", json={"yaml": text})
    assert saved.status_code in (200, 201), saved.text
    flow_id = saved.json()["id"]
    run_id = str(a.call("POST", f"/api/v1/flows/{flow_id}/runs", "write", json={"input": input}).json()["run_id"])
    assert str(a.runtime.wait(run_id, 30)) == "failed"
    return run_id


def test_a_typo_is_diagnosed_verified_applied_and_the_run_resumes(a: Api) -> None:
    # Given a run that failed on inputs.emial (the input has email)
    run_id = failed_run(a, TYPO, TYPO_INPUT)

    # When Jules is asked to heal it
    answer = a.call("POST", f"/api/v1/runs/{run_id}/heal", "write")

    # Then the rules name the cause, the fix is a diff, and its replay on the recorded input succeeded
    assert answer.status_code == 200, answer.text
    healing = answer.json()
    assert healing["run_id"] == run_id and healing["step"] == "text"
    assert healing["error"]["code"] == "expr.undefined"
    assert healing["diagnosis"]["cause"] == "undefined_name" and healing["diagnosis"]["by"] == "rules"
    assert "inputs.email" in healing["diagnosis"]["fix"]["description"]
    assert '+    with: {template: "Welcome {{ inputs.name }} <{{ inputs.email }}>"}' in healing["diff"]
    assert '-    with: {template: "Welcome {{ inputs.name }} <{{ inputs.emial }}>"}' in healing["diff"]
    assert healing["verified"] is True
    assert healing["verification"]["executed"] and healing["verification"]["ok"]
    assert "C-ION" in healing["cost_change"]
    assert len(healing["fingerprint"]) == 16
    assert str(a.runtime.status(run_id)) == "failed"  # nothing was changed by looking

    # When the reviewed fix is applied
    applied = a.call("POST", f"/api/v1/runs/{run_id}/heal/apply", "write", json={"fingerprint": healing["fingerprint"]})

    # Then the fixed version is stored, the run resumes from the failed step and succeeds
    assert applied.status_code == 200, applied.text
    done = applied.json()
    assert done["run_id"] == run_id and done["resumed_from"] == "text" and done["version"]
    assert str(a.runtime.wait(run_id, 30)) == "succeeded"
    run = a.call("GET", f"/api/v1/runs/{run_id}", "read").json()
    assert run["version_id"] == done["version"] and run["attempt"] == 2
    output = a.call("GET", f"/api/v1/runs/{run_id}/steps/text/output", "read").json()
    assert output["value"]["text"] == "Welcome Ana <ana@example.com>"
    versions = a.call("GET", "/api/v1/flows/welcome-text/versions", "read").json()["items"]
    assert [v["id"] for v in versions if v["latest"]] == [done["version"]] and len(versions) == 2

    # And the owner's audit log says who applied what
    audit = a.call("GET", "/api/v1/audit", "read").json()["items"]
    entry = next(e for e in audit if e["action"] == "heal.apply")
    assert entry["target"] == run_id
    assert entry["detail"]["version"] == done["version"] and entry["detail"]["cause"] == "undefined_name"

    # When it is healed again, then it has no failed step any more
    again = a.call("POST", f"/api/v1/runs/{run_id}/heal", "write")
    assert again.status_code == 409 and again.json()["error"]["code"] == "heal.no_failed_step"


def test_a_persons_action_then_resume_as_is(embedded: Api) -> None:
    a = embedded
    # Given a run that failed because a secret is not set
    run_id = failed_run(a, SECRET)

    # When healed, then the fix is an action for a person, with no diff to apply
    healing = a.call("POST", f"/api/v1/runs/{run_id}/heal", "write").json()
    assert healing["diagnosis"]["cause"] == "secret_missing"
    assert healing["diagnosis"]["fix"]["action"] == "ionflux secrets set shop_token"
    assert healing["diff"] == "" and healing["after"] is None and healing["verified"] is False

    # When the fix is applied anyway, then it is refused: there is nothing to apply
    refused = a.call("POST", f"/api/v1/runs/{run_id}/heal/apply", "write", json={})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "heal.refused"

    # When the person sets the secret and resumes it as it is, then it goes on from the failed step and succeeds
    assert a.call("PUT", "/api/v1/secrets/shop_token", "write", json={"value": "s3cret"}).status_code < 300
    applied = a.call("POST", f"/api/v1/runs/{run_id}/heal/apply", "write", json={"as_is": True})
    assert applied.status_code == 200, applied.text
    assert applied.json() == {"run_id": run_id, "version": None, "resumed_from": "report"}
    assert str(a.runtime.wait(run_id, 30)) == "succeeded"
    steps = {s["key"]: s for s in a.call("GET", f"/api/v1/runs/{run_id}", "read").json()["steps"]}
    assert steps["prepare"]["reused"] is True  # the step that had succeeded was not run again
    output = a.call("GET", f"/api/v1/runs/{run_id}/steps/report/output", "read").text
    assert "3 rows" in output and "s3cret" not in output


def test_a_fix_that_changed_since_it_was_reviewed_is_not_applied(embedded: Api) -> None:
    a = embedded
    # Given a failed run and a fingerprint that is not its fix's
    run_id = failed_run(a, TYPO, TYPO_INPUT)

    # When applied with it, then it is refused and nothing changed
    answer = a.call("POST", f"/api/v1/runs/{run_id}/heal/apply", "write", json={"fingerprint": "0" * 16})
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "heal.changed"
    assert str(a.runtime.status(run_id)) == "failed"
    assert len(a.call("GET", "/api/v1/flows/welcome-text/versions", "read").json()["items"]) == 1


def test_refusals_owner_scope_and_no_failed_step(embedded: Api) -> None:
    a = embedded
    # Given a failed run of the owner's and a run that succeeded
    run_id = failed_run(a, TYPO, TYPO_INPUT)
    saved = a.call("POST", "/api/v1/flows", "write", json={"yaml": QUICK}).json()
    ok = a.call("POST", f"/api/v1/flows/{saved['id']}/runs", "write", json={}).json()["run_id"]
    assert str(a.runtime.wait(ok, 30)) == "succeeded"

    for path in (f"/api/v1/runs/{run_id}/heal", f"/api/v1/runs/{run_id}/heal/apply"):
        # Then another owner does not find it, a read token may not, and nobody without credentials
        other = a.call("POST", path, "other", json={})
        assert other.status_code == 404 and other.json()["error"]["code"] == "run.not_found"
        read = a.call("POST", path, "read", json={})
        assert read.status_code == 403 and read.json()["error"]["code"] == "auth.forbidden"
        assert a.call("POST", path, "anonymous").status_code == 401

        # And a run that did not fail has no failed step to heal
        done = a.call("POST", path.replace(run_id, ok), "write", json={})
        assert done.status_code == 409, done.text
        assert done.json()["error"]["code"] == "heal.no_failed_step"
    assert str(a.runtime.status(run_id)) == "failed"


def test_healing_is_rate_limited_like_the_copilot(embedded: Api) -> None:
    a = embedded
    app = a.client.app
    assert isinstance(app, FastAPI)
    app.state.settings = Settings(copilot_rate_per_minute=1)
    run_id = failed_run(a, TYPO, TYPO_INPUT)

    # When healed twice in a minute, then the second is refused with when to try again
    assert a.call("POST", f"/api/v1/runs/{run_id}/heal", "write").status_code == 200
    second = a.call("POST", f"/api/v1/runs/{run_id}/heal", "write")
    assert second.status_code == 429 and second.json()["error"]["code"] == "request.rate_limited"
    assert int(second.headers["Retry-After"]) >= 1


def test_a_step_with_outside_effects_is_replayed_only_when_allowed_and_then_audited(tmp_path: Path) -> None:
    server = Upstream({"/orders": [{"status": 503, "text": "busy"}, {"status": 201, "json": {"id": 7}}]})
    with server, api("embedded", tmp_path, http_allow_networks=("127.0.0.1/32",)) as a:
        host = server.url.removeprefix("http://")
        text = flow(
            f"""
            fluxgraph: 1
            id: place-order
            nodes:
              - id: place
                type: http.request
                permissions: {{net: ["{host}"]}}
                with: {{url: "{server.url}/orders", method: POST, json: {{sku: A1}}}}
            """
        )
        run_id = failed_run(a, text)

        # By default a POST is not sent again: the proof is a dry replay, and nothing is audited
        dry = a.call("POST", f"/api/v1/runs/{run_id}/heal", "write").json()
        assert dry["diagnosis"]["cause"] == "transient" and dry["verified"] is False
        assert dry["verification"]["executed"] is False and server.count(("/orders",)) == 1

        # Allowed, it is sent again (and succeeds now); the audit log says so
        done = a.call("POST", f"/api/v1/runs/{run_id}/heal", "write", json={"allow_effects": True}).json()
        assert done["verified"] is True and server.count(("/orders",)) == 2
        entries = a.call("GET", "/api/v1/audit", "read").json()["items"]
        assert any(e["action"] == "heal.replay" and e["target"] == run_id for e in entries), entries
