"""The authorisation matrix: every API route x {anonymous, another owner, read token, write token, admin token,
operator}. A route's row says the scope it needs and whether it names one of the owner's things; the test asks
as each caller and checks the answer class: 401 without credentials, 403 below the scope, 404 for another
owner's thing (it does not exist for them), and for everyone allowed: neither of those, and never a 5xx.
A route missing from the table fails the test, so a new route must be classified here."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI

from api.settings import Settings
from tests.api_helpers import BACKENDS, Api, api

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


@dataclass
class World:
    """One owner's things, made fresh for each route (a route may delete or change them)."""

    flow: str
    version: str
    run: str  # waiting at its approval step
    done: str  # a finished run
    session: str
    change: str
    token: str
    secret: str


def make_world(a: Api, n: int) -> World:
    flow = f"authz-{n}"
    saved = a.call("POST", "/api/v1/flows", "admin", json={"yaml": FLOW.format(id=flow)}).json()
    quick = a.call("POST", "/api/v1/flows", "admin", json={"yaml": QUICK.format(id=f"quick-{n}")}).json()
    run = a.call("POST", f"/api/v1/flows/{flow}/runs", "admin", json={}).json()["run_id"]
    done = a.call("POST", f"/api/v1/flows/{quick['id']}/runs", "admin", json={}).json()["run_id"]
    assert str(a.runtime.wait(run, 30)) == "awaiting_approval" and str(a.runtime.wait(done, 30)) == "succeeded"
    session = a.call("POST", "/api/v1/copilot/sessions", "admin", json={"flow_id": flow}).json()["id"]
    turn = a.call(
        "POST",
        f"/api/v1/copilot/sessions/{session}/messages",
        "admin",
        json={"text": "cap it at 20 C-ION per run"},
        headers={"Accept": "application/json"},
    ).json()
    token = a.call("POST", "/api/v1/tokens", "admin", json={"name": f"t{n}", "scope": "read"}).json()["id"]
    a.call("PUT", f"/api/v1/secrets/s{n}", "admin", json={"value": "v"})
    return World(flow, saved["version"], run, done, session, turn["change"]["id"], token, f"s{n}")


Body = Callable[[World], Any]
NONE: Body = lambda w: None  # noqa: E731


@dataclass(frozen=True)
class Row:
    scope: str  # public | read | write | admin | operator
    owned: bool  # the path names one of the owner's things: another owner gets 404
    body: Body = NONE
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def _yaml(w: World) -> dict[str, str]:
    return {"yaml": QUICK.format(id=w.flow)}


JSON_ANSWER = (("Accept", "application/json"),)
ROUTES: dict[tuple[str, str], Row] = {
    ("GET", "/api/v1/setup"): Row("public", False),
    ("POST", "/api/v1/setup"): Row("public", False, lambda w: {"name": "x", "email": "x@x.io", "password": "p" * 12}),
    ("POST", "/api/v1/login"): Row(
        "public", False, lambda w: {"email": "ana@example.com", "password": "ana-password-1"}
    ),
    ("POST", "/api/v1/logout"): Row("public", False),
    ("GET", "/api/v1/me"): Row("read", False),
    ("GET", "/api/v1/tokens"): Row("read", False),
    ("POST", "/api/v1/tokens"): Row("admin", False, lambda w: {"name": "n", "scope": "read"}),
    ("DELETE", "/api/v1/tokens/{token_id}"): Row("admin", True),
    ("GET", "/api/v1/owners"): Row("operator", False),
    ("POST", "/api/v1/owners"): Row("operator", False, lambda w: {"name": "n"}),
    ("GET", "/api/v1/audit"): Row("read", False),
    ("POST", "/api/v1/flows"): Row("write", False, lambda w: {"yaml": QUICK.format(id=w.flow + "-new")}),
    ("GET", "/api/v1/flows"): Row("read", False),
    ("POST", "/api/v1/flows/validate"): Row("read", False, _yaml),
    ("POST", "/api/v1/flows/import"): Row("write", False, lambda w: {"flows": [QUICK.format(id=w.flow + "-imp")]}),
    ("GET", "/api/v1/flows/{flow_id}"): Row("read", True),
    ("DELETE", "/api/v1/flows/{flow_id}"): Row("admin", True),
    ("GET", "/api/v1/flows/{flow_id}/versions"): Row("read", True),
    ("GET", "/api/v1/flows/{flow_id}/versions/{version}"): Row("read", True),
    ("GET", "/api/v1/flows/{flow_id}/diff"): Row("read", True, query="from={version}"),
    ("POST", "/api/v1/flows/{flow_id}/activate"): Row("write", True, lambda w: {}),
    ("POST", "/api/v1/flows/{flow_id}/deactivate"): Row("write", True),
    ("GET", "/api/v1/flows/{flow_id}/export"): Row("read", True),
    ("POST", "/api/v1/flows/{flow_id}/runs"): Row("write", True, lambda w: {}),
    ("GET", "/api/v1/runs"): Row("read", False),
    ("GET", "/api/v1/runs/{run_id}"): Row("read", True),
    ("GET", "/api/v1/runs/{run_id}/steps/{key}/output"): Row("read", True),
    ("GET", "/api/v1/runs/{run_id}/steps/{key}/input"): Row("read", True),
    ("POST", "/api/v1/runs/{run_id}/cancel"): Row("write", True),
    ("POST", "/api/v1/runs/{run_id}/pause"): Row("write", True),
    ("POST", "/api/v1/runs/{run_id}/resume"): Row("write", True),
    ("POST", "/api/v1/runs/{run_id}/approve"): Row("write", True, lambda w: {}),
    ("POST", "/api/v1/runs/{run_id}/reject"): Row("write", True, lambda w: {}),
    ("POST", "/api/v1/runs/{run_id}/rerun"): Row("write", True, lambda w: {}),
    ("POST", "/api/v1/runs/{run_id}/heal"): Row("write", True, lambda w: {}),
    ("POST", "/api/v1/runs/{run_id}/heal/apply"): Row("write", True, lambda w: {}),
    ("GET", "/api/v1/runs/{run_id}/events"): Row("read", True),
    ("GET", "/api/v1/events"): Row("read", False, query="follow=false"),
    ("POST", "/api/v1/copilot/plan"): Row("write", False, lambda w: {"text": "every day at 9 post hi to #general"}),
    ("POST", "/api/v1/copilot/estimate"): Row("read", False, _yaml),
    ("POST", "/api/v1/copilot/optimise"): Row("read", False, _yaml),
    ("POST", "/api/v1/copilot/advice"): Row("read", False, _yaml),
    ("POST", "/api/v1/copilot/sessions"): Row("write", False, lambda w: {}),
    ("GET", "/api/v1/copilot/sessions"): Row("read", False),
    ("GET", "/api/v1/copilot/sessions/{session_id}"): Row("read", True),
    ("POST", "/api/v1/copilot/sessions/{session_id}/messages"): Row(
        "write", True, lambda w: {"text": "run it at 7 instead"}, headers=JSON_ANSWER
    ),
    ("POST", "/api/v1/copilot/sessions/{session_id}/changes/{change_id}/accept"): Row("write", True),
    ("POST", "/api/v1/copilot/sessions/{session_id}/changes/{change_id}/reject"): Row("write", True),
    ("POST", "/api/v1/copilot/sessions/{session_id}/save"): Row("write", True),
    ("GET", "/api/v1/secrets"): Row("read", False),
    ("PUT", "/api/v1/secrets/{name}"): Row("write", False, lambda w: {"value": "v2"}),
    ("DELETE", "/api/v1/secrets/{name}"): Row("admin", True),
    ("GET", "/api/v1/catalog/types"): Row("read", False),
    ("GET", "/api/v1/catalog/types/{name}"): Row("read", False),
    ("GET", "/api/v1/catalog/agents"): Row("read", False),
}
# the order matters: callers that must be refused first, then the ones whose call may change the world
_worlds = itertools.count()
CALLERS = ("anonymous", "other", "operator", "read", "write", "admin")
LEVEL = {"read": 0, "write": 1, "admin": 2}


def expected(row: Row, caller: str) -> str:
    """What ``caller`` must get: ``401``, ``403``, ``404`` or ``ok`` (none of those, and no 5xx)."""
    if row.scope == "public":
        return "ok"
    if caller == "anonymous":
        return "401"
    if row.scope == "operator":
        return "ok" if caller == "operator" else "403"
    if caller in ("other", "operator"):  # another owner, with an admin token
        return "404" if row.owned else "ok"
    return "ok" if LEVEL[caller] >= LEVEL[row.scope] else "403"


def _path(template: str, w: World) -> str:
    values = {
        "flow_id": w.flow,
        "version": w.version,
        "run_id": w.run,
        "key": "first",
        "session_id": w.session,
        "change_id": w.change,
        "token_id": w.token,
        "name": w.secret,
    }
    path = template.format(**values)
    if template.endswith("/catalog/types/{name}"):
        path = "/api/v1/catalog/types/http.request"
    if template.endswith("/events") and "{run_id}" in template:
        path = template.format(run_id=w.done)  # a finished run's stream ends
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def a(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api(request.param, tmp_path_factory.mktemp("authz")) as value:
        app = value.client.app
        assert isinstance(app, FastAPI)  # TestClient types its app as any ASGI app
        app.state.settings = Settings(copilot_rate_per_minute=100_000)  # every route is asked often
        yield value


def test_every_route_is_in_the_matrix(a: Api) -> None:
    paths = a.client.get("/api/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    routes = {r for r in routes if r[1].startswith("/api/v1")}
    assert routes == set(ROUTES), f"classify these routes: {sorted(routes - set(ROUTES))}"


@pytest.mark.parametrize(("method", "template"), sorted(ROUTES))
def test_each_caller_gets_what_its_scope_and_ownership_allow(a: Api, method: str, template: str) -> None:
    row = ROUTES[(method, template)]
    world = make_world(a, next(_worlds))
    failures = []
    for caller in CALLERS:
        a.client.cookies.clear()
        path = _path(template, world)
        query = row.query.format(version=world.version)
        body = row.body(world)
        headers = {**a.as_(caller), **dict(row.headers)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        answer = a.client.request(
            method,
            f"{path}?{query}" if query else path,
            headers=headers,
            content=None if body is None else json.dumps(body),
        )
        want, got = expected(row, caller), answer.status_code
        if want == "ok":
            fine = got not in (401, 403) and got < 500 and not (row.owned and got == 404 and caller == "admin")
        else:
            fine = got == int(want)
        if not fine:
            failures.append(f"{caller}: wanted {want}, got {got} {answer.text[:200]}")
    assert not failures, f"{method} {template}:\n" + "\n".join(failures)
