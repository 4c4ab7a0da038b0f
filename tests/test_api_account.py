"""The API's front door: first-run setup (once, even when two arrive at once), tokens (scoped, hashed, revocable,
last used), browser sessions with CSRF and their cookie's flags, operators, the audit log, lists as pages, and
one error model for every refusal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2.exceptions import VerificationError
from fastapi.testclient import TestClient

from api.app import create_app
from engine.store.tables import LOCAL_OWNER, api_tokens, owners
from tests.api_helpers import BACKENDS, Api, api
from tests.runtime_helpers import running

ANA = {"email": "ana@example.com", "password": "ana-password-1"}
HERE = "http://127.0.0.1:8080"  # first run is done at one of the server's own names


def walk(a: Api, path: str, who: str = "admin", limit: int = 2) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, following ``next_cursor`` ``limit`` items at a time -> (the items, the pages)."""
    items: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while True:
        joiner = "&" if "?" in path else "?"
        answer = a.call("GET", f"{path}{joiner}limit={limit}" + (f"&cursor={cursor}" if cursor else ""), who)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"items", "next_cursor"} and len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def sign_in(client: TestClient) -> str:
    """Sign in as Ana with the session cookie; -> the session's CSRF token."""
    signed = client.post("/api/v1/login", json=ANA)
    assert signed.status_code == 200, signed.text
    return str(signed.json()["csrf"])


def cookie_flags(set_cookie: str) -> set[str]:
    return {part.strip().lower() for part in set_cookie.split(";")[1:]}


@pytest.fixture
def a(tmp_path: Path) -> Iterator[Api]:
    with api("embedded", tmp_path, start=False) as value:
        yield value


def test_first_run_creates_the_first_owner_once(tmp_path: Path) -> None:
    with (
        running("embedded", tmp_path, start=False) as rt,
        TestClient(create_app(rt), base_url=HERE) as client,
    ):
        # Given a flow saved from the command line before anyone signed up (as ionflux up stores the blueprints)
        rt.orchestrator.save_flow("fluxgraph: 1\nid: from-cli\nnodes: [{id: a, type: log, with: {message: hi}}]\n")
        assert client.get("/api/v1/setup").json() == {"needs_setup": True}
        body = {"name": "Ana", "email": "ana@example.com", "password": "a-long-password"}
        # A page at another name (DNS rebinding: evil.example resolving here) cannot make itself the operator
        rebound = client.post("http://evil.example:8080/api/v1/setup", json=body)
        assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "setup.elsewhere"
        done = client.post("/api/v1/setup", json=body)
        assert done.status_code == 201, done.text
        token = done.json()["token"]["token"]
        assert token.startswith("ifx_") and done.json()["owner"]["role"] == "admin"
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["owner"]["email"] == "ana@example.com" and me.json()["scope"] == "admin"
        # Then the first owner is the command line's: what it made is theirs, not stranded in a nobody's workspace
        assert me.json()["owner"]["id"] == LOCAL_OWNER
        listed = client.get("/api/v1/flows", headers={"Authorization": f"Bearer {token}"}).json()["items"]
        assert [f["id"] for f in listed] == ["from-cli"]
        again = client.post("/api/v1/setup", json=body)
        assert again.status_code == 409 and again.json()["error"]["code"] == "setup.done"


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_first_runs_at_once_make_one_owner_and_the_other_is_told_why(backend: str, tmp_path: Path) -> None:
    with running(backend, tmp_path, start=False) as rt, TestClient(create_app(rt), base_url=HERE) as client:
        # Given the first setup held between its check and its write, until the second has its answer (or 2 s)
        reached_insert, second_answered = threading.Event(), threading.Event()
        held: list[int] = []

        def hold_the_first_insert(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            if statement.lstrip().upper().startswith(("INSERT INTO OWNERS", "UPDATE OWNERS")) and not held:
                held.append(threading.get_ident())
                reached_insert.set()
                second_answered.wait(2)

        answers: dict[str, Any] = {}

        def setup(name: str) -> None:
            body = {"name": name, "email": f"{name}@example.com", "password": "a-long-password"}
            answers[name] = client.post("/api/v1/setup", json=body)

        sa.event.listen(rt.db, "before_cursor_execute", hold_the_first_insert)
        try:
            first = threading.Thread(target=setup, args=("ana",))
            first.start()
            assert reached_insert.wait(30)
            # When a second first run arrives in that gap
            setup("rui")
            second_answered.set()
            first.join(30)
        finally:
            sa.event.remove(rt.db, "before_cursor_execute", hold_the_first_insert)
        # Then the first made the owner, and the second waited for it and was refused in the one error model
        assert answers["ana"].status_code == 201, answers["ana"].text
        refused = answers["rui"]
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["code"] == "setup.done" and "first owner" in error["message"] and "login" in error["hint"]
        with rt.db.connect() as conn:
            made = conn.execute(sa.select(owners.c.email).where(owners.c.email.is_not(None))).scalars().all()
        assert made == ["ana@example.com"]


def test_tokens_are_scoped_hashed_revocable_and_remember_their_last_use(a: Api) -> None:
    made = a.call("POST", "/api/v1/tokens", json={"name": "ci", "scope": "write"})
    assert made.status_code == 201
    token, token_id = made.json()["token"], made.json()["id"]
    with a.runtime.db.connect() as conn:
        stored = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == token_id)).mappings().one()
    assert token not in str(dict(stored)) and stored["prefix"] == token[:10]  # only a digest is kept
    assert a.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["scope"] == "write"
    listed = {t["id"]: t for t in a.call("GET", "/api/v1/tokens", "read").json()["items"]}
    assert listed[token_id]["last_used_at"] is not None and "token" not in listed[token_id]
    assert a.call("POST", "/api/v1/tokens", "write", json={"name": "x"}).status_code == 403  # admin scope only
    assert a.call("DELETE", f"/api/v1/tokens/{token_id}").status_code == 204
    refused = a.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "auth.invalid"
    assert a.call("DELETE", f"/api/v1/tokens/{token_id}").status_code == 404
    actions = [e["action"] for e in a.call("GET", "/api/v1/audit").json()["items"]]
    assert actions[:2] == ["token.revoke", "token.create"]


def test_another_owners_token_cannot_be_revoked(a: Api) -> None:
    theirs = a.call("GET", "/api/v1/tokens", "other").json()["items"][0]["id"]
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
    in_query = a.client.post(f"/api/v1/tokens?csrf={csrf}", json={"name": "t"})  # query strings end up in logs
    assert in_query.status_code == 403 and in_query.json()["error"]["code"] == "auth.csrf"
    assert a.client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert a.client.get("/api/v1/me").status_code == 401


def test_failed_sign_ins_are_limited_per_email_and_per_client_and_audited(a: Api) -> None:
    wrong = {"email": "ana@example.com", "password": "wrong-password"}
    # Given a successful sign-in (it costs nothing) and ten wrong passwords for Ana's email
    assert a.client.post("/api/v1/login", json=ANA).status_code == 200
    for _ in range(10):
        assert a.client.post("/api/v1/login", json=wrong).status_code == 401
    # Then even the right password waits, with how long, before any password is checked
    limited = a.client.post("/api/v1/login", json=ANA)
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "request.rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60 and "wait" in limited.json()["error"]["hint"]
    # And another email from the same client has its own count, up to the client's (30 failures a minute)
    stranger = {"email": "nobody@example.com", "password": "wrong-password"}
    answers = [a.client.post("/api/v1/login", json=stranger).status_code for _ in range(12)]
    assert answers[:10] == [401] * 10 and answers[10:] == [429, 429]
    # And Ana's audit log shows the attempts at her account: one success, ten failures, by client address
    actions = [(e["action"], e["actor"]) for e in a.call("GET", "/api/v1/audit?limit=50").json()["items"]]
    assert actions.count(("auth.login_failed", "client testclient")) == 10 and ("auth.login", "session") in actions


def test_at_most_two_password_checks_run_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """argon2 takes 64 MiB a check: a burst of sign-ins must not take the server's memory with it."""
    import time

    import api.accounts

    running_now, most = 0, 0
    lock = threading.Lock()

    class SlowHasher:
        def _work(self) -> None:
            nonlocal running_now, most
            with lock:
                running_now += 1
                most = max(most, running_now)
            time.sleep(0.05)
            with lock:
                running_now -= 1

        def hash(self, password: str) -> str:
            self._work()
            return "x"

        def verify(self, hashed: str, password: str) -> bool:
            self._work()
            raise VerificationError

    with running("embedded", tmp_path, start=False) as rt:
        accounts = api.accounts.Accounts(rt.db)
        monkeypatch.setattr(api.accounts, "_HASHER", SlowHasher())
        threads = [
            threading.Thread(target=accounts.login, args=(f"u{n}@example.com", "password-1"), kwargs={"client": str(n)})
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert most == 2


def test_signing_out_a_browser_session_needs_its_csrf_token_and_a_token_caller_has_none_to_end(a: Api) -> None:
    # Given Ana signed in with the session cookie
    csrf = sign_in(a.client)
    # When another site makes her browser post to logout (the cookie goes along, the CSRF token cannot)
    forged = a.client.post("/api/v1/logout")
    # Then it is refused, saying what is missing, and she is still signed in
    assert forged.status_code == 403, forged.text
    error = forged.json()["error"]
    assert error["code"] == "auth.csrf" and "X-CSRF-Token" in error["hint"]
    assert error["location"] == [{"field": "header.X-CSRF-Token", "message": "missing, or not this session's"}]
    assert a.client.post("/api/v1/logout", headers={"X-CSRF-Token": "not-hers"}).status_code == 403
    assert a.client.post(f"/api/v1/logout?csrf={csrf}").status_code == 403  # only the header counts
    assert a.client.get("/api/v1/me").json()["actor"] == "session"
    # And with the token it ends the session, and the cookie is cleared
    ended = a.client.post("/api/v1/logout", headers={"X-CSRF-Token": csrf})
    assert ended.status_code == 204 and 'ionflux_session=""' in ended.headers["set-cookie"]
    assert a.client.get("/api/v1/me").status_code == 401
    # And a caller with an API token (no session) or a stale cookie has nothing to end: 204, no CSRF token needed
    assert a.call("POST", "/api/v1/logout", "read").status_code == 204
    a.client.cookies.set("ionflux_session", "expired-or-unknown")
    assert a.client.post("/api/v1/logout").status_code == 204


def test_the_session_cookie_is_secure_over_https_and_http_only_always(a: Api) -> None:
    app = a.client.app
    # Over HTTPS the cookie is Secure, HttpOnly and SameSite=Lax
    over_https = TestClient(app, base_url="https://testserver").post("/api/v1/login", json=ANA)
    assert over_https.status_code == 200, over_https.text
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= cookie_flags(over_https.headers["set-cookie"])
    # Over plain HTTP on loopback (`ionflux up` on http://127.0.0.1) it is HttpOnly and SameSite=Lax, but not
    # Secure: a browser would not send a Secure cookie back over http, and nobody could sign in
    loopback = TestClient(app, base_url="http://127.0.0.1:8080", client=("127.0.0.1", 50000))
    over_http = loopback.post("/api/v1/login", json=ANA)
    assert over_http.status_code == 200, over_http.text
    flags = cookie_flags(over_http.headers["set-cookie"])
    assert {"httponly", "samesite=lax"} <= flags and "secure" not in flags


@pytest.mark.parametrize("backend", BACKENDS)
def test_tokens_owners_and_the_audit_log_are_pages(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given Ana with five tokens (three of the fixture's, two made now) and four owners in all
        for n in range(2):
            assert a.call("POST", "/api/v1/tokens", json={"name": f"t{n}", "scope": "read"}).status_code == 201
        # When each list is read two at a time, Then every item comes once, in the list's order
        tokens, pages = walk(a, "/api/v1/tokens")
        assert pages == 3 and len({t["id"] for t in tokens}) == 5
        assert [t["id"] for t in tokens] == sorted(t["id"] for t in tokens)  # oldest first
        everyone, _ = walk(a, "/api/v1/owners", "operator", limit=3)
        assert {o["email"] for o in everyone} == {None, "op@example.com", "ana@example.com", "rui@example.com"}
        entries, pages = walk(a, "/api/v1/audit", limit=1)
        assert pages == 2 and [e["action"] for e in entries] == ["token.create", "token.create"]
        assert entries[0]["id"] > entries[1]["id"]  # newest first
        # And the audit log's older `before=` still pages (deprecated), but not together with a cursor
        older = a.call("GET", f"/api/v1/audit?before={entries[0]['id']}").json()
        assert [e["id"] for e in older["items"]] == [entries[1]["id"]] and older["next_cursor"] is None
        first = a.call("GET", "/api/v1/audit?limit=1").json()
        both = a.call("GET", f"/api/v1/audit?cursor={first['next_cursor']}&before={entries[0]['id']}")
        assert both.status_code == 422 and both.json()["error"]["location"][0]["field"] == "query.before"
        # And a cursor this API did not give, or a page size out of range, is refused saying where
        for query in ("cursor=%25%25", "limit=0", "limit=201"):
            bad = a.call("GET", f"/api/v1/tokens?{query}")
            assert bad.status_code == 422 and bad.json()["error"]["code"] == "request.invalid", query
        assert a.call("GET", "/api/v1/tokens?cursor=%25%25").json()["error"]["location"][0]["field"] == "query.cursor"


def test_only_operators_manage_owners(a: Api) -> None:
    body = {"name": "Zé", "email": "ze@example.com", "password": "ze-password-1"}
    assert a.call("POST", "/api/v1/owners", "admin", json=body).status_code == 403
    made = a.call("POST", "/api/v1/owners", "operator", json=body)
    assert made.status_code == 201 and made.json()["can_sign_in"]
    dup = a.call("POST", "/api/v1/owners", "operator", json=body)
    assert dup.status_code == 409 and dup.json()["error"]["code"] == "owner.exists"
    assert "ze@example.com" in {o["email"] for o in a.call("GET", "/api/v1/owners", "operator").json()["items"]}
    ze = made.json()["id"]
    # An operator sets a forgotten password (Zé's browser session ends) and can shut an owner out
    assert a.client.post("/api/v1/login", json={"email": "ze@example.com", "password": "ze-password-1"}).is_success
    reset = a.call("PUT", f"/api/v1/owners/{ze}/password", "operator", json={"password": "ze-password-2"})
    assert reset.status_code == 204 and a.client.get("/api/v1/me").status_code == 401  # the session ended
    assert a.client.post("/api/v1/login", json={"email": "ze@example.com", "password": "ze-password-2"}).is_success
    assert a.call("POST", f"/api/v1/owners/{ze}/lock", "operator").status_code == 204
    locked = a.client.post("/api/v1/login", json={"email": "ze@example.com", "password": "ze-password-2"})
    assert locked.status_code == 401 and a.client.get("/api/v1/me").status_code == 401
    assert a.call("POST", "/api/v1/owners/nobody/lock", "operator").json()["error"]["code"] == "owner.not_found"
    me = a.call("GET", "/api/v1/me", "operator").json()["owner"]["id"]
    assert a.call("POST", f"/api/v1/owners/{me}/lock", "operator").json()["error"]["code"] == "owner.refused"
    actions = [e["action"] for e in a.call("GET", "/api/v1/audit", "operator").json()["items"]]
    assert actions[:3] == ["owner.lock", "owner.password", "owner.create"]


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


def test_no_page_or_answer_can_be_framed_or_sniffed(a: Api) -> None:
    """Clickjacking: the open local demo needs no cookie, so another site could show its pages in a frame."""
    for path in ("/ui/login", "/api/v1/me", "/api/v1/nope", "/health"):
        answer = a.client.get(path)
        assert answer.headers["x-frame-options"] == "DENY", path
        assert answer.headers["content-security-policy"] == "frame-ancestors 'none'", path
        assert answer.headers["x-content-type-options"] == "nosniff" and answer.headers["referrer-policy"], path
    too_large = a.client.post("/api/v1/login", content=b"x" * (3 * 1024 * 1024))  # refused at the edge
    assert too_large.status_code == 413 and too_large.headers["x-frame-options"] == "DENY"


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
        local = TestClient(demo, client=("127.0.0.1", 50000), base_url="http://127.0.0.1:8080")
        me = local.get("/api/v1/me")
        assert me.status_code == 200 and me.json()["actor"] == "local demo (no sign-in)"
        assert me.json()["owner"]["id"] == "local"
        assert TestClient(demo, client=("::1", 50000), base_url="http://localhost:8080").get("/api/v1/me").is_success
        # The local owner, not an operator: no owners listed or made without signing in
        assert local.get("/api/v1/owners").status_code == 403
        mallory = {"name": "Mallory", "email": "m@evil.example", "password": "mallory-password", "role": "admin"}
        made = local.post("/api/v1/owners", json=mallory, headers={"X-IONFLUX": "1"})
        assert made.status_code == 403 and made.json()["error"]["code"] == "auth.forbidden"
        # DNS rebinding: a page at evil.example whose name resolves to 127.0.0.1 talks to the server from the
        # visitor's browser, as a loopback client, with its own name as Host and Origin: not the demo's visitor
        rebound = TestClient(demo, client=("127.0.0.1", 50000), base_url="http://evil.example:8080")
        evil = {"Origin": "http://evil.example:8080", "X-IONFLUX": "1"}
        assert rebound.get("/api/v1/me").status_code == 401
        assert rebound.post("/api/v1/tokens", json={"name": "x", "scope": "admin"}, headers=evil).status_code == 401
        assert rebound.put("/api/v1/secrets/rebound", json={"value": "x"}, headers=evil).status_code == 401
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
        remote = TestClient(demo, client=("192.0.2.7", 50000), base_url="http://127.0.0.1:8080")
        assert remote.get("/api/v1/me").status_code == 401  # not from this machine
        exposed = create_app(rt, settings=Settings(open_local=True, bind="0.0.0.0:8080"))
        assert (
            TestClient(exposed, client=("127.0.0.1", 1), base_url="http://127.0.0.1:8080").get("/api/v1/me").status_code
            == 401
        )  # never when exposed
        closed = create_app(rt, settings=Settings(bind="127.0.0.1:8080"))
        assert (
            TestClient(closed, client=("127.0.0.1", 1), base_url="http://127.0.0.1:8080").get("/api/v1/me").status_code
            == 401
        )  # off by default
        # Once first run makes the local owner someone's, the demo is over: that workspace needs signing in
        first = {"name": "Ana", "email": "ana@example.com", "password": "a-long-password"}
        assert local.post("/api/v1/setup", json=first).status_code == 201
        assert local.get("/api/v1/me").status_code == 401
        assert local.get("/ui/flows", follow_redirects=False).headers["location"].startswith("/ui/login")
