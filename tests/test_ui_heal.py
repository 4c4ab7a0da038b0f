""" "Ask Jules to fix" on a run's page over HTTP (TestClient): the button only on failed runs and for visitors who
may act; the healing fragment (diagnosis, fix, coloured diff, proof, cost, decisions); Apply & resume resumes the run
from the failed step and follows it live again; a person's action then Resume as is; a fix that changed since it was
shown is shown again, not applied; another owner's run, read-only visitors and a missing CSRF token are refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.accounts import Accounts
from api.settings import Settings
from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER
from tests.runtime_helpers import TYPO, TYPO_INPUT, flow, one_step_flow, running
from tests.ui_helpers import local_client, open_demo_app, ui
from ui.visitor import Visitor

HX = {"HX-Request": "true"}
SECRET = flow(
    """
    fluxgraph: 1
    id: shop-report
    secrets: [shop_token]
    nodes:
      - {id: prepare, type: data.set, with: {rows: 3}}
      - {id: report, type: text.template, needs: [prepare], with: {template: "token {{ secrets.shop_token }}"}}
    """
)
QUICK = one_step_flow("quick")


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


def settled(rt: Runtime, text: str, input: dict[str, str] | None = None, owner: str = LOCAL_OWNER) -> str:
    _, version = rt.orchestrator.save_flow(text, "test.yaml", owner=owner)
    run_id = rt.orchestrator.start_run(version, input)
    rt.wait(run_id, 30)
    return run_id


def test_the_button_is_offered_on_failed_runs_only(rt: Runtime, app: FastAPI, client: TestClient) -> None:
    # Given a failed run and a run that succeeded
    failed = settled(rt, TYPO, TYPO_INPUT)
    ok = settled(rt, QUICK)

    # Then only the failed run's page offers to ask Jules, with a place for the answer
    page = client.get(f"/ui/runs/{failed}").text
    assert f'hx-post="/ui/runs/{failed}/heal" hx-target="#heal-result"' in page
    assert ">Ask Jules to fix<" in page and 'id="heal-result"' in page
    assert "/heal" not in client.get(f"/ui/runs/{ok}").text

    # And a read-only visitor is not offered it, and is refused if they post anyway
    app.state.ui_visitor = lambda request: Visitor(LOCAL_OWNER, "reader", "read", None)
    assert "Ask Jules to fix" not in client.get(f"/ui/runs/{failed}").text
    refused = client.post(f"/ui/runs/{failed}/heal", headers=HX)
    assert refused.status_code == 403 and "read-only" in refused.text


def test_the_healing_shows_diagnosis_diff_proof_and_apply_resumes_the_run(rt: Runtime, client: TestClient) -> None:
    # Given a run that failed on inputs.emial
    run_id = settled(rt, TYPO, TYPO_INPUT)
    seen = rt.orchestrator.state(run_id)

    # When Jules is asked to fix it
    answer = client.post(f"/ui/runs/{run_id}/heal", headers=HX)

    # Then the diagnosis, the fix, the coloured diff, the proof and the cost are shown, with Apply & resume
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert '<code id="heal-cause">undefined_name</code>' in html
    assert "the rules (no model)" in html and "it has inputs.email" in html
    assert '<p id="heal-fix">read inputs.email instead of inputs.emial</p>' in html
    assert re.search(r'<span class="diff-add">\+ .*inputs\.email', html)
    assert re.search(r'<span class="diff-del">- .*inputs\.emial', html)
    assert 'class="proof proof-verified"' in html and "Verified on the recorded input." in html
    assert "C-ION per run" in html
    fingerprint = re.search(r'name="fingerprint" value="([0-9a-f]{16})"', html)
    assert fingerprint is not None
    assert f'hx-post="/ui/runs/{run_id}/heal/apply"' in html and "Apply &amp; resume" in html
    assert "Resume as is" not in html
    assert rt.orchestrator.state(run_id) == seen  # looking changed nothing

    # When the fix is applied
    applied = client.post(f"/ui/runs/{run_id}/heal/apply", data={"fingerprint": fingerprint.group(1)}, headers=HX)

    # Then the run resumes from the failed step on the fixed version, the page's state is swapped in, and the run
    # is followed live again from the event its first stream ended on
    assert applied.status_code == 200, applied.text
    assert "Resumed from <code>text</code> on the fixed version" in applied.text
    assert 'id="run-head" class="run-head" hx-swap-oob="true"' in applied.text
    follow = re.search(r'hx-sse:connect="/ui/runs/([^/]+)/live\?after=(\d+)"', applied.text)
    assert follow is not None and follow.group(1) == run_id
    assert str(rt.wait(run_id, 30)) == "succeeded"

    # And the stream it follows sends only what happened since
    stream = client.get(f"/ui/runs/{run_id}/live", params={"after": follow.group(2)}).text
    seqs = [int(n) for n in re.findall(r"^id: (\d+)", stream.replace("\r\n", "\n"), re.M)]
    assert seqs and min(seqs) == int(follow.group(2)) + 1
    assert "run succeeded" in stream

    # And it is in the owner's audit log
    entry = next(e for e in Accounts(rt.db).audit_log(LOCAL_OWNER) if e["action"] == "heal.apply")
    assert entry["target"] == run_id and entry["detail"]["step"] == "text" and entry["detail"]["version"]
    assert entry["detail"]["cause"] == "undefined_name" and entry["detail"]["by"] == "rules"

    # When Jules is asked again, then the refusal says why: the run has no failed step now
    again = client.post(f"/ui/runs/{run_id}/heal", headers=HX)
    assert again.status_code == 409 and "heal.no_failed_step" in again.text and 'role="alert"' in again.text


def test_a_persons_action_is_shown_then_the_run_resumes_as_it_is(rt: Runtime, client: TestClient) -> None:
    # Given a run that failed because a secret is not set
    run_id = settled(rt, SECRET)

    # When Jules is asked, then the fix is the person's action, with the command and no Apply
    html = client.post(f"/ui/runs/{run_id}/heal", headers=HX).text
    assert "Only you can do this part." in html
    assert "<code>ionflux secrets set shop_token</code>" in html
    assert 'href="/ui/settings#secrets"' in html
    assert "Apply &amp; resume" not in html and 'name="as_is" value="true"' in html and "Resume as is" in html

    # When the secret is set and the run resumed as it is, then it succeeds from the failed step
    rt.orchestrator.secrets.set("shop_token", "s3cret", LOCAL_OWNER)
    done = client.post(f"/ui/runs/{run_id}/heal/apply", data={"as_is": "true"}, headers=HX)
    assert done.status_code == 200, done.text
    assert "Resumed from <code>report</code> as it is." in done.text
    assert str(rt.wait(run_id, 30)) == "succeeded"


def test_a_fix_that_changed_is_shown_again_not_applied(rt: Runtime, client: TestClient) -> None:
    # Given a failed run, and a fingerprint that is not its fix's
    run_id = settled(rt, TYPO, TYPO_INPUT)

    # When it is applied, then nothing is applied and the fix found now is shown to review
    answer = client.post(f"/ui/runs/{run_id}/heal/apply", data={"fingerprint": "0" * 16}, headers=HX)
    assert answer.status_code == 409
    assert "The fix changed since it was shown" in answer.text and "Apply &amp; resume" in answer.text
    assert str(rt.status(run_id)) == "failed"


def test_another_owners_run_is_not_found(rt: Runtime, client: TestClient) -> None:
    other = Accounts(rt.db).create_owner("Rui", email="rui@example.com", password="rui-password-1")
    theirs = settled(rt, TYPO.replace("id: welcome-text", "id: theirs"), TYPO_INPUT, owner=other)
    for path in ("heal", "heal/apply"):
        answer = client.post(f"/ui/runs/{theirs}/{path}", headers=HX)
        assert answer.status_code == 404 and "run.not_found" in answer.text
    assert str(rt.status(theirs)) == "failed"


def test_asking_jules_to_fix_spends_the_owners_co_pilot_budget(rt: Runtime, app: FastAPI, client: TestClient) -> None:
    # Given an owner allowed one co-pilot call a minute, and a failed run
    app.state.settings = Settings(open_local=True, bind="127.0.0.1:8080", copilot_rate_per_minute=1)
    run_id = settled(rt, TYPO, TYPO_INPUT)
    # When Jules is asked twice, Then the second waits, as the API's heal and the Builder's messages do
    assert client.post(f"/ui/runs/{run_id}/heal", headers=HX).status_code == 200
    again = client.post(f"/ui/runs/{run_id}/heal", headers=HX)
    assert again.status_code == 429 and "request.rate_limited" in again.text and "try again in" in again.text
    assert int(again.headers["Retry-After"]) >= 1


def test_a_rerun_from_the_page_is_followed_live_again(rt: Runtime, client: TestClient) -> None:
    # Given a failed run whose page's stream has ended
    run_id = settled(rt, TYPO, TYPO_INPUT)

    # When it is re-run from the page, then the answer follows it again
    answer = client.post(f"/ui/runs/{run_id}/rerun", headers=HX)
    assert answer.status_code == 200
    assert re.search(rf'id="run-follow"[^>]*hx-sse:connect="/ui/runs/{run_id}/live\?after=\d+"', answer.text)


def test_healing_needs_the_sessions_csrf_token(tmp_path: Path) -> None:
    with ui(tmp_path) as u:
        # Given a signed-in owner's failed run
        u.runtime.start()
        csrf = u.sign_in()
        owner = u.accounts.by_session(u.client.cookies["ionflux_session"])
        assert owner is not None
        run_id = settled(u.runtime, TYPO, TYPO_INPUT, owner=owner.owner_id)

        # Then without the session's CSRF token, asking and applying are refused, and nothing changes
        assert u.client.post(f"/ui/runs/{run_id}/heal", headers=HX).status_code == 403
        assert u.client.post(f"/ui/runs/{run_id}/heal/apply", data={"as_is": "true"}, headers=HX).status_code == 403
        assert str(u.runtime.status(run_id)) == "failed"

        # And with it, the healing is shown
        answer = u.client.post(f"/ui/runs/{run_id}/heal", headers={**HX, "X-CSRF-Token": csrf})
        assert answer.status_code == 200 and "Verified on the recorded input." in answer.text
