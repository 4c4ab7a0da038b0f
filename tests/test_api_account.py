"""The API's front door: first-run setup, tokens (scoped, hashed, revocable, last used), browser sessions with
CSRF, operators, the audit log, and one error model for every refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from engine.store.tables import api_tokens
from tests.api_helpers import Api, api
from tests.runtime_helpers import running


@pytest.fixture
def a(tmp_path: Path) -> Iterator[Api]:
    with api("embedded", tmp_path, start=False) as value:
        yield value


def test_first_run_creates_the_first_owner_once(tmp_path: Path) -> None:
    with running("embedded", tmp_path, start=False) as rt, TestClient(create_app(rt)) as client:
        assert client.get("/api/v1/setup").json() == {"needs_setup": True}
        body = {"name": "Ana", "email": "ana@example.com", "password": "a-long-password"}
        done = client.post("/api/v1/setup", json=body)
        assert done.status_code == 201, done.text
        token = done.json()["token"]["token"]
        assert token.startswith("ifx_") and done.json()["owner"]["role"] == "admin"
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["owner"]["email"] == "ana@example.com" and me.json()["scope"] == "admin"
        again = client.post("/api/v1/setup", json=body)
        assert again.status_code == 409 and again.json()["error"]["code"] == "setup.done"


def test_tokens_are_scoped_hashed_revocable_and_remember_their_last_use(a: Api) -> None:
    made = a.call("POST", "/api/v1/tokens", json={"name": "ci", "scope": "write"})
    assert made.status_code == 201
    token, token_id = made.json()["token"], made.json()["id"]
    with a.runtime.db.connect() as conn:
        stored = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).mappings().one()
    assert token not in str(dict(stored)) and stored["prefix"] == token[:10]  # only a digest is kept
    assert a.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["scope"] == "write"
    listed = {t["id"]: t for t in a.call("GET", "/api/v1/tokens", "read").json()}
    assert listed[token_id]["last_used_at"] is not None and "token" not in listed[token_id]
    assert a.call("POST", "/api/v1/tokens", "write", json={"name": "x"}).status_code == 403  # admin scope only
    assert a.call("DELETE", f"/api/v1/tokens/{token_id}").status_code == 204
    refused = a.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "auth.invalid"
    assert a.call("DELETE", f"/api/v1/tokens/{token_id}").status_code == 404
    actions = [e["action"] for e in a.call("GET", "/api/v1/audit").json()]
    assert actions[:2] == ["token.revoke", "token.create"]


def test_another_owners_token_cannot_be_revoked(a: Api) -> None:
    theirs = a.call("GET", "/api/v1/tokens", "other").json()[0]["id"]
    gone = a.call("DELETE", f"/api/v1/tokens/{theirs}")
    assert gone.status_code == 404  # not 403: another owner's things do not exist for you


def test_a_browser_session_needs_the_csrf_token_for_changes(a: Api) -> None:
    bad = a.client.post("/api/v1/login", json={"email": "ana@example.com", "password": "wrong-password"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "auth.invalid"
    signed = a.client.post("/api/v1/login", json={"email": "ana@example.com", "password": "ana-password-1"})
    assert signed.status_code == 200
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    csrf = signed.json()["csrf"]
    assert a.client.get("/api/v1/me").json()["actor"] == "session"
    refused = a.client.post("/api/v1/tokens", json={"name": "t"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.csrf"
    assert a.client.post("/api/v1/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert a.client.post("/api/v1/logout").status_code == 204
    assert a.client.get("/api/v1/me").status_code == 401


def test_only_operators_manage_owners(a: Api) -> None:
    body = {"name": "Zé", "email": "ze@example.com", "password": "ze-password-1"}
    assert a.call("POST", "/api/v1/owners", "admin", json=body).status_code == 403
    made = a.call("POST", "/api/v1/owners", "operator", json=body)
    assert made.status_code == 201 and made.json()["can_sign_in"]
    dup = a.call("POST", "/api/v1/owners", "operator", json=body)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "owner.exists"
    assert "ze@example.com" in {o["email"] for o in a.call("GET", "/api/v1/owners", "operator").json()}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/api/v1/me", None, 401, "auth.required"),
        ("GET", "/api/v1/nowhere", None, 404, "route.not_found"),
        ("POST", "/api/v1/login", {"email": "x"}, 422, "request.invalid"),
    ],
)
def test_every_refusal_has_the_same_shape(
    a: Api, method: str, path: str, body: dict[str, str] | None, status: int, code: str
) -> None:
    answer = a.client.request(method, path, json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code and error["message"] and "Traceback" not in answer.text


def test_health_and_readiness(a: Api) -> None:
    assert a.client.get("/health").json()["ok"] is True
    assert a.client.get("/ready").json() == {"ok": True}


def test_an_oversized_body_is_refused_before_any_route_reads_it(a: Api) -> None:
    big = b"x" * (2 * 1024 * 1024 + 1)
    declared = a.client.post("/api/v1/login", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "request.too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b"x" * (1024 * 1024)

    streamed = a.client.post("/api/v1/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413


def test_the_open_local_demo_lets_this_machine_in_without_sign_in_and_nothing_else(tmp_path: Path) -> None:
    from api.settings import Settings

    with running("embedded", tmp_path, start=False) as rt:
        demo = create_app(rt, settings=Settings(open_local=True, bind="127.0.0.1:8080"))
        local = TestClient(demo, client=("127.0.0.1", 50000))
        me = local.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["actor"] == "local demo (no sign-in)"
        assert me.json()["owner"]["id"] == "local"
        flow = "fluxgraph: 1\nid: demo-open\nnodes: [{id: a, type: log, with: {message: hi}}]\n"
        blind = local.post("/api/v1/flows", content=flow, headers={"Content-Type": "application/yaml"})
        assert blind.status_code == 403 and blind.json()["error"]["code"] == "auth.csrf"  # a cross-site form
        foreign = local.post(
            "/api/v1/flows",
            content=flow,
            headers={"Content-Type": "application/yaml", "X-IONFLUX": "1", "Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        ours = local.post(
            "/api/v1/flows", content=flow, headers={"Content-Type": "application/yaml", "HX-Request": "true"}
        )
        assert ours.status_code == 201
        remote = TestClient(demo, client=("192.0.2.7", 50000))
        assert remote.get("/api/v1/me").status_code == 401  # not from this machine
        exposed = create_app(rt, settings=Settings(open_local=True, bind="0.0.0.0:8080"))
        assert TestClient(exposed, client=("127.0.0.1", 1)).get("/api/v1/me").status_code == 401  # never when exposed
        closed = create_app(rt, settings=Settings(bind="127.0.0.1:8080"))
        assert TestClient(closed, client=("127.0.0.1", 1)).get("/api/v1/me").status_code == 401  # off by default
