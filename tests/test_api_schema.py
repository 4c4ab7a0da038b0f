"""schemathesis against the live OpenAPI schema, on SQLite and PostgreSQL (a fresh database each): requests
generated from the schema (as an owner with an admin token, so routes are reached past authentication) never get a
5xx, and every answer matches the schema it declares (status, content type, headers, body; an event stream event
by event). About half the requests name things that exist (flows, runs waiting, paused, finished and failed, a chat
session and its proposed change, a token, a secret, a webhook URL) or carry a body that passes, so every route's
success is checked as well as its refusals. Not checked: that every schema-valid request is accepted, since a
flow's YAML or an unknown id are refused on meaning, not shape.

The co-pilot's turn (``…/messages``) is asked for its JSON answer (``Accept: application/json``): its event
stream waits for the model, and is tested in tests/test_api_copilot.py. The live-event streams are
asked with ``follow=false`` and only for runs that have finished, so every stream ends: schemathesis reads an
answer whole before it checks it, and a stream that follows a run never ends."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err

from api.accounts import Accounts
from api.settings import Settings
from tests.api_helpers import BACKENDS, Api, api
from tests.runtime_helpers import GATED, TYPO, TYPO_INPUT, flow, one_step_flow

HOOKED = flow(
    """
    fluxgraph: 1
    id: hooked
    triggers: [{type: webhook}]
    nodes:
      - {id: only, type: data.set, with: {n: 1}}
    """
)
EXAMPLES = 12  # per operation, and as many again naming things that exist; hypothesis shrinks a failure
# routes that hash a password (argon2: about half a second each on CI's two cores) are asked fewer times
FEWER = {"POST /api/v1/login": 4, "POST /api/v1/owners": 6}
# bodies that pass (a generated one is refused on meaning: a random string is no flow, nor Ana's password)
BODIES: dict[str, Any] = {
    "POST /api/v1/flows": {"yaml": one_step_flow("posted")},
    "POST /api/v1/copilot/estimate": {"yaml": GATED},
    "POST /api/v1/copilot/optimise": {"yaml": GATED},
    "POST /api/v1/copilot/advice": {"yaml": GATED},
    "POST /api/v1/login": {"email": "ana@example.com", "password": "ana-password-1"},
    "PUT /api/v1/owners/{owner_id}/password": {"password": "a-long-password"},
}


@pytest.fixture(params=BACKENDS)
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    with api(request.param, tmp_path) as value:
        app = value.client.app
        assert isinstance(app, FastAPI)  # TestClient types its app as any ASGI app
        # generated requests reach the co-pilot's routes past its rate limit (tested in test_api_copilot.py)
        app.state.settings = Settings(copilot_rate_per_minute=100_000)
        yield value


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The OpenAPI schema (the same on every backend)."""
    with api("embedded", tmp_path_factory.mktemp("schema"), start=False) as value:
        return dict(value.client.get("/api/openapi.json").json())


class Things:
    """The owner's things that exist, for generated requests to name: made once, but for a route whose success
    uses its thing up (an approval decided, a change accepted): that route gets fresh ones of its own."""

    def __init__(self, a: Api) -> None:
        self.a = a
        self.gated = self.post("/api/v1/flows", {"yaml": GATED})
        self.quick = self.post("/api/v1/flows", {"yaml": one_step_flow("quick")})["id"]
        self.typo = self.post("/api/v1/flows", {"yaml": TYPO})["id"]
        hooked = self.post("/api/v1/flows", {"yaml": HOOKED})["id"]
        url = self.post(f"/api/v1/flows/{hooked}/activate", {})["armed_triggers"][0]["url"]
        self.hook = url.rsplit("/hooks/", 1)[1]
        self.session = self.post("/api/v1/copilot/sessions", {"flow_id": self.gated["id"]})["id"]
        self.change = self.proposed(self.session)
        assert a.call("PUT", "/api/v1/secrets/seeded", "admin", json={"value": "v"}).status_code == 200
        self.finished = [self.run(self.quick, "succeeded"), self.failed()]
        self.waiting = self.run(self.gated["id"], "awaiting_approval")
        self.someone = Accounts(a.runtime.db).create_owner("Someone", email="someone@example.com")  # operators' routes

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        answer = self.a.call("POST", path, "admin", json=body, **kw)
        assert answer.status_code in (200, 201), answer.text
        return answer.json()

    def run(self, flow_id: str, settled: str, input: Any = None) -> str:
        run_id = str(self.post(f"/api/v1/flows/{flow_id}/runs", {"input": input})["run_id"])
        assert str(self.a.runtime.wait(run_id, 30)) == settled
        return run_id

    def failed(self) -> str:
        return self.run(self.typo, "failed", TYPO_INPUT)

    def paused(self) -> str:
        run_id = self.run(self.gated["id"], "awaiting_approval")
        self.a.runtime.orchestrator.pause(run_id)
        return run_id

    def proposed(self, session: str) -> str:
        path = f"/api/v1/copilot/sessions/{session}/messages"
        turn = self.post(path, {"text": "cap it at 20 C-ION per run"}, headers={"Accept": "application/json"})
        return str(turn["change"]["id"])

    def values(self, route: str, name: str) -> list[str]:
        """What may fill the path parameter ``name`` of ``route`` ([] when nothing seeded fits)."""
        action = route.rsplit("/", 1)[-1]
        if name == "run_id" and route.endswith("/events"):
            return self.finished  # a stream ends when its run has finished
        if name == "run_id" and action in ("cancel", "pause", "approve", "reject"):
            return [self.run(self.gated["id"], "awaiting_approval")]
        if name == "run_id" and action == "resume":
            return [self.paused()]
        if name == "run_id" and action in ("rerun", "apply"):
            return [self.failed()]
        if name == "change_id" and action in ("accept", "reject"):
            return [self.proposed(self.session)]
        if name == "token_id":
            return [self.post("/api/v1/tokens", {"name": "seeded", "scope": "read"})["id"]]
        return {
            "run_id": [self.waiting, *self.finished],
            "flow_id": [self.gated["id"], self.quick, self.typo],
            "version": [self.gated["version"]],
            "key": ["prepare", "a", "text"],  # steps of the gated, quick and typo runs
            "session_id": [self.session],
            "change_id": [self.change],
            "name": ["http.request", "text.template"] if "/catalog/" in route else ["seeded"],
            "token": [self.hook],
            "owner_id": [self.someone],
        }.get(name, [])

    def variants(self, route: str, names: list[str]) -> list[dict[str, Any]]:
        """``as_strategy`` arguments for requests that name these things (or carry a body that is valid)."""
        found: list[dict[str, Any]] = []
        if names and set(names) == {"run_id", "key"}:  # a step of that run: each run with its own step's key
            pairs = zip([self.waiting, *self.finished], ["prepare", "a", "text"], strict=True)
            found += [{"path_parameters": {"run_id": run, "key": key}} for run, key in pairs]
        elif names:
            sources = [self.values(route, name) for name in names]
            if "version" in names and "flow_id" in names:  # the version is the gated flow's: the others are 404
                sources[names.index("flow_id")] = [self.gated["id"]]
            found += [{"path_parameters": dict(zip(names, v, strict=True))} for v in itertools.product(*sources)]
        if route == "GET /api/v1/flows/{flow_id}/diff":  # the version is the gated flow's: the other flows are 422
            found = [{"path_parameters": {"flow_id": self.gated["id"]}, "query": {"from": self.gated["version"]}}]
        if route in BODIES:
            found.append({"body": BODIES[route], "media_type": "application/json"})
        return found


def _caller(path: str) -> str:
    return "operator" if path.startswith("/api/v1/owners") else "admin"  # the owner is no operator


def fuzz(cases: st.SearchStrategy[Any], examples: int, headers: dict[str, str], excluded: list[Any]) -> set[int]:
    """Ask ``examples`` generated cases, checking each answer against the schema; -> the statuses seen."""
    statuses: set[int] = set()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=cases)
    def check(case: Any) -> None:
        statuses.add(case.call_and_validate(headers=headers, excluded_checks=excluded).status_code)

    check()
    return statuses


# hypothesis warns when the global `random` changes while it draws a case; the PostgreSQL + Redis runtime's
# broker consumer threads (dramatiq's Redis maintenance roll) use it all along, not the strategies
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@pytest.mark.timeout(300)  # about 45 s on each backend
def test_the_api_keeps_its_schema_and_never_fails_with_5xx(live: Api) -> None:
    things = Things(live)
    loaded = schemathesis.openapi.from_asgi("/api/openapi.json", live.client.app)
    operations = []
    for result in loaded.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the part of the schema schemathesis could not read
        operations.append(result.ok())
    # deletions last: until then, the seeded things exist for every other route
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    for operation in operations:
        fixed: dict[str, Any] = {}
        if operation.path.endswith("/events"):
            fixed["query"] = {"follow": "false"}
        route = f"{operation.method.upper()} {operation.path}"
        names = [p.name for p in operation.path_parameters]
        strategies = [operation.as_strategy(**fixed)]
        strategies += [operation.as_strategy(**(fixed | v)) for v in things.variants(route, names)]
        headers = live.as_(_caller(operation.path))
        if operation.path.endswith("/messages"):
            headers["Accept"] = "application/json"  # the turn as one answer (its stream: see the docstring)
        excluded = [positive_data_acceptance]
        examples = FEWER.get(route, EXAMPLES) * min(2, len(strategies))
        try:
            answered[route] = fuzz(st.one_of(strategies), examples, headers, excluded)
        except (Exception, FailureGroup) as e:  # every operation is tried; all failures are reported together
            failures.append(f"{route}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)
    # and the successes were checked too: every route answered 2xx at least once (but setup: the first owner exists)
    never = sorted(r for r, statuses in answered.items() if not any(200 <= s < 300 for s in statuses))
    assert never == ["POST /api/v1/setup"], str({r: answered[r] for r in never})


def test_the_schema_documents_every_route_with_its_errors(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert "/api/v1/me" in paths and "/api/v1/tokens" in paths
    assert {"HTTPBearer", "APIKeyCookie"} <= set(document["components"]["securitySchemes"])
    problem = {"$ref": "#/components/schemas/Problem"}
    refusals = {
        f"{method.upper()} {path} {status}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        for status, answer in operation["responses"].items()
        if status >= "400" and answer.get("content", {}).get("application/json", {}).get("schema") != problem
    }
    assert not refusals, "every refusal is a Problem ({error: {code, message, hint}})"


def test_a_wrong_password_is_documented_as_a_problem(document: dict[str, Any]) -> None:
    refused = document["paths"]["/api/v1/login"]["post"]["responses"]["401"]
    assert refused.get("content", {}).get("application/json", {}).get("schema") == {
        "$ref": "#/components/schemas/Problem"
    }


def test_the_exported_yaml_is_documented_as_the_document_it_parses_to(document: dict[str, Any]) -> None:
    export = document["paths"]["/api/v1/flows/{flow_id}/export"]["get"]["responses"]["200"]["content"]
    assert export["application/yaml"]["schema"].get("type") != "string"


def test_the_turns_event_stream_is_documented_event_by_event(document: dict[str, Any]) -> None:
    turn = document["paths"]["/api/v1/copilot/sessions/{session_id}/messages"]["post"]["responses"]["200"]["content"]
    assert turn["text/event-stream"]["schema"].get("type") == "object"
