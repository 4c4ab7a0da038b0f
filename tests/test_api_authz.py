"""The authorisation matrix: every API route x {anonymous, a revoked token, another owner, an operator, read token,
write token, admin token}, on SQLite and PostgreSQL.

A route's row says the scope it needs, whether its path names one of the owner's things, and the exact status an
allowed caller gets on the owner's own things (2xx, or the documented refusal when the thing as it stands does
not take the action). The test asks as each caller and checks exactly: 401 without credentials (`auth.required`)
or with a revoked token (`auth.invalid`), 403 below the scope or for an operator-only route (`auth.forbidden`),
404 for another owner's thing (it does not exist for them: docs/api.md, "Who may do what"), and the row's status
for everyone allowed. A refused call changes nothing the audit log would show. A caller that may change things
gets fresh things of its own, so each allowed call meets the same state. A route missing from the table fails the
test, so a new route must be classified here. The routes outside /api/v1 (/health, /ready, /hooks/{token}) are
public by design and have their own test below."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from api.accounts import Accounts
from api.settings import Settings
from engine.store.tables import audit_log
from tests.api_helpers import BACKENDS, Answer, Api, api
from tests.runtime_helpers import TYPO, TYPO_INPUT

FLOW = """
fluxgraph: 1
id: {id}
triggers: [{{type: manual}}]
nodes:
  - id: first
    type: data.set
    with: {{n: 1}}
  - id: gate
    type: approval
    needs: [first]
    with: {{message: "go?"}}
  - id: last
    type: data.set
    needs: [gate]
    with: {{done: true}}
"""
QUICK = """
fluxgraph: 1
id: {id}
nodes:
  - {{id: only, type: data.set, with: {{n: 1}}}}
"""
HOOKED = """
fluxgraph: 1
id: {id}
triggers: [{{type: webhook}}]
nodes:
  - {{id: only, type: data.set, with: {{n: 1}}}}
"""


class World:
    """One owner's things, each made on first use (a route that names none of them costs nothing)."""

    def __init__(self, a: Api, n: int) -> None:
        self.a, self.n = a, n

    def _post(self, path: str, body: Any, **kw: Any) -> Any:
        answer = self.a.call("POST", path, "admin", json=body, **kw)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def _run(self, flow_id: str, settled: str, input: Any = None) -> str:
        run_id = str(self._post(f"/api/v1/flows/{flow_id}/runs", {"input": input})["run_id"])
        assert str(self.a.runtime.wait(run_id, 30)) == settled
        return run_id

    @cached_property
    def saved(self) -> dict[str, Any]:
        return dict(self._post("/api/v1/flows", {"yaml": FLOW.format(id=f"authz-{self.n}")}))

    @property
    def flow(self) -> str:
        return str(self.saved["id"])

    @property
    def version(self) -> str:
        return str(self.saved["version"])

    @cached_property
    def run(self) -> str:
        """Waiting at its approval step."""
        return self._run(self.flow, "awaiting_approval")

    @cached_property
    def paused(self) -> str:
        run_id = self._run(self.flow, "awaiting_approval")
        self.a.runtime.orchestrator.pause(run_id)
        return run_id

    @cached_property
    def done(self) -> str:
        """Finished: its event stream ends."""
        quick = self._post("/api/v1/flows", {"yaml": QUICK.format(id=f"quick-{self.n}")})["id"]
        return self._run(quick, "succeeded")

    @cached_property
    def failed(self) -> str:
        """Failed on a typo the rules fix: it heals, and re-runs."""
        typo = TYPO.replace("id: welcome-text", f"id: typo-{self.n}")
        return self._run(self._post("/api/v1/flows", {"yaml": typo})["id"], "failed", TYPO_INPUT)

    @cached_property
    def session(self) -> str:
        return str(self._post("/api/v1/copilot/sessions", {"flow_id": self.flow})["id"])

    @cached_property
    def change(self) -> str:
        path = f"/api/v1/copilot/sessions/{self.session}/messages"
        turn = self._post(path, {"text": "cap it at 20 C-ION per run"}, headers={"Accept": "application/json"})
        assert turn["change"] is not None, turn
        return str(turn["change"]["id"])

    @cached_property
    def token(self) -> str:
        return str(self._post("/api/v1/tokens", {"name": f"t{self.n}", "scope": "read"})["id"])

    @cached_property
    def someone(self) -> str:
        """An owner an operator can reset or lock out (not one of the callers)."""
        return Accounts(self.a.runtime.db).create_owner(f"Someone {self.n}", email=f"someone{self.n}@example.com")

    @cached_property
    def secret(self) -> str:
        assert self.a.call("PUT", f"/api/v1/secrets/s{self.n}", "admin", json={"value": "v"}).status_code == 200
        return f"s{self.n}"


Body = Callable[[World], Any]
NONE: Body = lambda w: None  # noqa: E731


@dataclass(frozen=True)
class Row:
    scope: str  # public | read | write | admin | operator
    owned: bool  # the path names one of the owner's things: another owner gets 404
    status: int  # what an allowed caller gets on the owner's own things
    code: str = ""  # for a refusal as ``status``: its error code
    body: Body = NONE
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    run: str = "run"  # which of the world's runs {run_id} names: run, paused, done or failed


def _yaml(w: World) -> dict[str, str]:
    return {"yaml": QUICK.format(id=f"any-{w.n}")}


JSON_ANSWER = (("Accept", "application/json"),)
ROUTES: dict[tuple[str, str], Row] = {
    ("GET", "/api/v1/setup"): Row("public", False, 200),
    ("POST", "/api/v1/setup"): Row(
        "public", False, 409, "setup.done", lambda w: {"name": "x", "email": "x@x.io", "password": "p" * 12}
    ),
    ("POST", "/api/v1/login"): Row(
        "public", False, 200, body=lambda w: {"email": "ana@example.com", "password": "ana-password-1"}
    ),
    ("POST", "/api/v1/logout"): Row("public", False, 204),
    ("GET", "/api/v1/me"): Row("read", False, 200),
    ("GET", "/api/v1/tokens"): Row("read", False, 200),
    ("POST", "/api/v1/tokens"): Row("admin", False, 201, body=lambda w: {"name": "n", "scope": "read"}),
    ("DELETE", "/api/v1/tokens/{token_id}"): Row("admin", True, 204),
    ("GET", "/api/v1/owners"): Row("operator", False, 200),
    ("POST", "/api/v1/owners"): Row("operator", False, 201, body=lambda w: {"name": "n"}),
    ("PUT", "/api/v1/owners/{owner_id}/password"): Row("operator", False, 204, body=lambda w: {"password": "p" * 12}),
    ("POST", "/api/v1/owners/{owner_id}/lock"): Row("operator", False, 204),
    ("GET", "/api/v1/audit"): Row("read", False, 200),
    ("POST", "/api/v1/flows"): Row("write", False, 201, body=lambda w: {"yaml": QUICK.format(id=f"new-{w.n}")}),
    ("GET", "/api/v1/flows"): Row("read", False, 200),
    ("POST", "/api/v1/flows/validate"): Row("read", False, 200, body=_yaml),
    ("POST", "/api/v1/flows/import"): Row(
        "write", False, 200, body=lambda w: {"flows": [QUICK.format(id=f"imp-{w.n}")]}
    ),
    ("GET", "/api/v1/flows/{flow_id}"): Row("read", True, 200),
    ("DELETE", "/api/v1/flows/{flow_id}"): Row("admin", True, 204),
    ("GET", "/api/v1/flows/{flow_id}/versions"): Row("read", True, 200),
    ("GET", "/api/v1/flows/{flow_id}/versions/{version}"): Row("read", True, 200),
    ("GET", "/api/v1/flows/{flow_id}/diff"): Row("read", True, 200, query="from={version}"),
    ("POST", "/api/v1/flows/{flow_id}/activate"): Row("write", True, 200, body=lambda w: {}),
    ("POST", "/api/v1/flows/{flow_id}/deactivate"): Row("write", True, 200),
    ("GET", "/api/v1/flows/{flow_id}/export"): Row("read", True, 200),
    ("POST", "/api/v1/flows/{flow_id}/runs"): Row("write", True, 201, body=lambda w: {}),
    ("GET", "/api/v1/runs"): Row("read", False, 200),
    ("GET", "/api/v1/runs/{run_id}"): Row("read", True, 200),
    ("GET", "/api/v1/runs/{run_id}/steps/{key}/output"): Row("read", True, 200),
    ("GET", "/api/v1/runs/{run_id}/steps/{key}/input"): Row("read", True, 200),
    ("POST", "/api/v1/runs/{run_id}/cancel"): Row("write", True, 200),
    ("POST", "/api/v1/runs/{run_id}/pause"): Row("write", True, 200),
    ("POST", "/api/v1/runs/{run_id}/resume"): Row("write", True, 200, run="paused"),
    ("POST", "/api/v1/runs/{run_id}/approve"): Row("write", True, 200, body=lambda w: {}),
    ("POST", "/api/v1/runs/{run_id}/reject"): Row("write", True, 200, body=lambda w: {}),
    ("POST", "/api/v1/runs/{run_id}/rerun"): Row("write", True, 200, body=lambda w: {}, run="failed"),
    ("POST", "/api/v1/runs/{run_id}/heal"): Row("write", True, 200, body=lambda w: {}, run="failed"),
    ("POST", "/api/v1/runs/{run_id}/heal/apply"): Row("write", True, 200, body=lambda w: {}, run="failed"),
    ("GET", "/api/v1/runs/{run_id}/events"): Row("read", True, 200, run="done"),
    ("GET", "/api/v1/events"): Row("read", False, 200, query="follow=false"),
    ("POST", "/api/v1/copilot/plan"): Row(
        "write", False, 200, body=lambda w: {"text": "every day at 9 post hi to #general"}
    ),
    ("POST", "/api/v1/copilot/estimate"): Row("read", False, 200, body=_yaml),
    ("POST", "/api/v1/copilot/optimise"): Row("read", False, 200, body=_yaml),
    ("POST", "/api/v1/copilot/advice"): Row("read", False, 200, body=_yaml),
    ("POST", "/api/v1/copilot/sessions"): Row("write", False, 201, body=lambda w: {}),
    ("GET", "/api/v1/copilot/sessions"): Row("read", False, 200),
    ("GET", "/api/v1/copilot/sessions/{session_id}"): Row("read", True, 200),
    ("POST", "/api/v1/copilot/sessions/{session_id}/messages"): Row(
        "write", True, 200, body=lambda w: {"text": "run it at 7 instead"}, headers=JSON_ANSWER
    ),
    ("POST", "/api/v1/copilot/sessions/{session_id}/changes/{change_id}/accept"): Row("write", True, 200),
    ("POST", "/api/v1/copilot/sessions/{session_id}/changes/{change_id}/reject"): Row("write", True, 200),
    ("POST", "/api/v1/copilot/sessions/{session_id}/save"): Row("write", True, 200),
    ("GET", "/api/v1/secrets"): Row("read", False, 200),
    ("PUT", "/api/v1/secrets/{name}"): Row("write", False, 200, body=lambda w: {"value": "v2"}),
    ("DELETE", "/api/v1/secrets/{name}"): Row("admin", True, 204),
    ("GET", "/api/v1/catalog/types"): Row("read", False, 200),
    ("GET", "/api/v1/catalog/types/{name}"): Row("read", False, 200),
    ("GET", "/api/v1/catalog/agents"): Row("read", False, 200),
}
# the refused first (they share one world, which they must leave as it was), then the allowed
CALLERS = ("anonymous", "revoked", "other", "operator", "read", "write", "admin")
LEVEL = {"read": 0, "write": 1, "admin": 2}
_worlds = itertools.count()


@dataclass(frozen=True)
class Want:
    status: int
    code: str = ""  # "": any (a 2xx has none); "*.not_found": any code ending in not_found

    def fits(self, answer: Answer) -> bool:
        if answer.status_code != self.status:
            return False
        if not self.code:
            return True
        code = str(answer.json().get("error", {}).get("code", ""))
        return code.endswith("not_found") if self.code == "*.not_found" else code == self.code


def expected(row: Row, caller: str) -> Want:
    """What ``caller`` must get on ``row``'s route."""
    allowed = Want(row.status, row.code)
    if row.scope == "public":
        return allowed
    if caller == "anonymous":
        return Want(401, "auth.required")
    if caller == "revoked":
        return Want(401, "auth.invalid")
    if row.scope == "operator":
        return allowed if caller == "operator" else Want(403, "auth.forbidden")
    if caller in ("other", "operator"):  # another owner, with an admin token
        return Want(404, "*.not_found") if row.owned else allowed
    return allowed if LEVEL[caller] >= LEVEL[row.scope] else Want(403, "auth.forbidden")


def _path(template: str, row: Row, w: World) -> str:
    """``template`` with the world's things; only the things it names are made."""
    values: dict[str, Callable[[], str]] = {
        "flow_id": lambda: w.flow,
        "version": lambda: w.version,
        "run_id": lambda: str(getattr(w, row.run)),
        "key": lambda: "text" if row.run == "failed" else "first",
        "session_id": lambda: w.session,
        "change_id": lambda: w.change,
        "token_id": lambda: w.token,
        "owner_id": lambda: w.someone,
        "name": lambda: "http.request" if "/catalog/" in template else w.secret,
    }
    return template.format(**{name: make() for name, make in values.items() if "{" + name + "}" in template})


def _audited(a: Api) -> int:
    with a.runtime.db.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one())


@pytest.fixture(scope="module", params=BACKENDS)
def a(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api(request.param, tmp_path_factory.mktemp("authz")) as value:
        app = value.client.app
        assert isinstance(app, FastAPI)  # TestClient types its app as any ASGI app
        app.state.settings = Settings(copilot_rate_per_minute=100_000)  # every route is asked often
        accounts = Accounts(value.runtime.db)
        revoked, value.tokens["revoked"] = accounts.issue_token(value.owner, "revoked", "admin")
        assert accounts.revoke(value.owner, revoked)
        yield value


def test_every_route_is_in_the_matrix_with_a_status_its_schema_documents(a: Api) -> None:
    paths = a.client.get("/api/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    routes = {r for r in routes if r[1].startswith("/api/v1")}
    assert routes == set(ROUTES), f"classify these routes: {sorted(routes - set(ROUTES))}"
    undocumented = [
        f"{method} {path}: {row.status}"
        for (method, path), row in ROUTES.items()
        if str(row.status) not in paths[path][method.lower()]["responses"]
    ]
    assert not undocumented


@dataclass(frozen=True)
class Ask:
    """One request of a row, made against one world."""

    method: str
    url: str
    body: Any
    headers: dict[str, str]

    @staticmethod
    def of(method: str, template: str, row: Row, w: World) -> Ask:
        path = _path(template, row, w)
        query = row.query.format(version=w.version) if row.query else ""
        body = row.body(w)
        headers = dict(row.headers) | ({"Content-Type": "application/json"} if body is not None else {})
        return Ask(method, f"{path}?{query}" if query else path, body, headers)

    def by(self, a: Api, caller: str) -> Answer:
        a.client.cookies.clear()
        content = None if self.body is None else json.dumps(self.body)
        return a.client.request(self.method, self.url, headers=self.headers | a.as_(caller), content=content)


def _ghost(a: Api, template: str, ask: Ask) -> Want:
    """What the owner gets when the path names things that do not exist: another owner's must look the same."""
    path = re.sub(r"\{(\w+)\}", lambda m: "http.request" if "/catalog/" in template else "nothing0", template)
    query = ask.url.partition("?")[2]
    answer = Ask(ask.method, f"{path}?{query}" if query else path, ask.body, ask.headers).by(a, "admin")
    code = answer.json().get("error", {}).get("code", "")
    assert answer.status_code == 404 and code.endswith("not_found"), f"{template}: {answer.text}"
    return Want(404, code)


@pytest.mark.parametrize(("method", "template"), sorted(ROUTES))
def test_each_caller_gets_exactly_what_its_scope_and_ownership_allow(a: Api, method: str, template: str) -> None:
    row = ROUTES[(method, template)]
    allowed = Want(row.status, row.code)
    refused = [c for c in CALLERS if expected(row, c) != allowed]
    # Given the owner's things (one world; a caller that may change it gets a fresh one of its own)
    shared = Ask.of(method, template, row, World(a, next(_worlds)))
    ghost = _ghost(a, template, shared) if row.owned else None
    before = _audited(a)
    answers: list[tuple[str, Want, Answer]] = []
    # When every caller asks: the refused first, then the allowed
    for caller in refused:
        want = expected(row, caller)
        if want.status == 404 and ghost is not None:
            want = ghost  # exactly what the owner gets for a thing that does not exist
        answers.append((caller, want, shared.by(a, caller)))
    left_alone = _audited(a) == before
    for caller in (c for c in CALLERS if c not in refused):
        ask = Ask.of(method, template, row, World(a, next(_worlds))) if method != "GET" else shared
        answers.append((caller, allowed, ask.by(a, caller)))
    # Then each got exactly its status (and code), every refusal in the one error shape, and no refusal acted
    failures = [
        f"{caller}: wanted {want.status} {want.code}, got {got.status_code} {got.text[:300]}"
        for caller, want, got in answers
        if not want.fits(got)
    ]
    failures += [
        f"{caller}: a refusal without code, message and hint: {got.text[:300]}"
        for caller, _, got in answers
        if got.status_code >= 400 and not {"code", "message", "hint"} <= set(got.json().get("error", {}))
    ]
    assert not failures, f"{method} {template}:\n" + "\n".join(failures)
    assert left_alone, f"{method} {template}: a refused call wrote to the audit log"


def test_health_ready_and_webhooks_are_public_and_a_hooks_run_is_its_flows_owners(a: Api) -> None:
    # Given an owner's flow with a webhook trigger, armed
    flow_id = f"hooked-{next(_worlds)}"
    assert a.call("POST", "/api/v1/flows", "write", json={"yaml": HOOKED.format(id=flow_id)}).status_code == 201
    armed = a.call("POST", f"/api/v1/flows/{flow_id}/activate", "write").json()["armed_triggers"]
    hook = "/hooks/" + str(armed[0]["url"]).rsplit("/hooks/", 1)[1]
    for caller in CALLERS:
        a.client.cookies.clear()
        # When anyone asks, with whatever credentials (none, revoked, another owner's): they are not looked at
        health = a.client.get("/health", headers=a.as_(caller))
        ready = a.client.get("/ready", headers=a.as_(caller))
        delivered = a.client.post(hook, headers=a.as_(caller), json={"from": caller})
        unknown = a.client.post("/hooks/not-a-webhook-url", headers=a.as_(caller), json={})
        # Then the process and the database answer, the delivery is taken, and an unknown URL is 404
        assert (health.status_code, health.json()["ok"]) == (200, True), caller
        assert (ready.status_code, ready.json()) == (200, {"ok": True}), caller
        assert delivered.status_code == 202, f"{caller}: {delivered.text}"
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "webhook.not_found", caller
        # and the run it started is the flow's owner's, whoever delivered it
        run_id = delivered.json()["run_id"]
        assert a.call("GET", f"/api/v1/runs/{run_id}", "read").status_code == 200
        assert a.call("GET", f"/api/v1/runs/{run_id}", "other").status_code == 404


def test_another_owners_things_named_in_a_body_or_a_query_do_not_exist_either(a: Api) -> None:
    # Given one flow of each owner
    mine, theirs = World(a, next(_worlds)), f"theirs-{next(_worlds)}"
    saved = a.call("POST", "/api/v1/flows", "other", json={"yaml": QUICK.format(id=theirs)})
    assert saved.status_code == 201, saved.text
    their_version = saved.json()["version"]
    their_run = a.call("POST", f"/api/v1/flows/{theirs}/runs", "other", json={}).json()["run_id"]
    assert str(a.runtime.wait(their_run, 30)) == "succeeded"
    # When the owner names the other owner's flow, version or run anywhere a route takes one
    session = a.call("POST", "/api/v1/copilot/sessions", "write", json={"flow_id": theirs})
    start = a.call("POST", f"/api/v1/flows/{mine.flow}/runs", "write", json={"version": their_version})
    diff = a.call("GET", f"/api/v1/flows/{mine.flow}/diff?from={their_version}", "read")
    export = a.call("GET", f"/api/v1/flows/{mine.flow}/export?version={their_version}", "read")
    rerun = a.call("POST", f"/api/v1/runs/{mine.failed}/rerun", "write", json={"version": their_version})
    runs = a.call("GET", f"/api/v1/runs?flow={theirs}", "read")
    taken = a.call("POST", "/api/v1/flows", "write", json={"yaml": QUICK.format(id=theirs)})
    # Then none of it is found, used or listed (a flow id is unique in the installation: saving theirs is 409)
    assert (session.status_code, session.json()["error"]["code"]) == (404, "flow.not_found")
    assert (start.status_code, start.json()["error"]["code"]) == (422, "run.version_invalid")
    assert (diff.status_code, diff.json()["error"]["code"]) == (404, "flow_version.not_found")
    assert (export.status_code, export.json()["error"]["code"]) == (404, "flow_version.not_found")
    assert (rerun.status_code, rerun.json()["error"]["code"]) == (422, "run.version_invalid")
    assert runs.status_code == 200 and runs.json()["items"] == []
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "flow.id_taken")
