"""The API's edges: `/ready` when the database is gone, the answer to an unexpected failure, the open demo's
marks (the terminal banner and the UI's badge), the audit log's who and when, a NUL character (which PostgreSQL
cannot store) refused the same on both databases, and `ionflux api` serving /api/v1 on its own."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.accounts import Accounts
from api.app import create_app
from api.settings import Settings
from engine.runtime.runtime import Runtime
from tests.api_helpers import BACKENDS, Answer, Api, api
from tests.conftest import ROOT
from tests.runtime_helpers import EXTENSIONS, GATED, backend_config, running
from tests.services import PG_ADMIN, free_port

INCIDENT = re.compile(r"an unexpected error \(([0-9A-Z]{26})\)")
LEAKS = ("Traceback", 'File "', "sqlalchemy", "psycopg", "SELECT", "Error(")  # what no answer may show


def _until(ask: Callable[[], Answer], status: int, seconds: float = 15) -> Answer:
    deadline = time.monotonic() + seconds
    while True:
        answer = ask()
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


@dataclass
class Outage:
    """A PostgreSQL runtime whose database the test can take away and give back (its sessions ended, new ones
    refused: what a stopped database looks like to the server), with a password in its URL (the test server's,
    or one its trust authentication ignores) to show no answer carries it."""

    runtime: Runtime
    password: str
    _admin: sa.Engine
    _name: str

    def _allow(self, allowed: bool) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{self._name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
            if not allowed:
                ended = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %(name)s"
                conn.exec_driver_sql(ended, {"name": self._name})

    def down(self) -> None:
        self._allow(False)

    def up(self) -> None:
        self._allow(True)


@contextmanager
def outage(tmp: Path) -> Iterator[Outage]:
    with backend_config("postgres", tmp) as cfg:
        real = sa.engine.make_url(cfg.database_url)
        password = real.password or "pg-password-never-shown"  # the test server trusts loopback: any will do
        url = real.set(password=password).render_as_string(hide_password=False)
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        try:
            with Runtime(replace(cfg, database_url=url), extension_modules=EXTENSIONS) as runtime:
                it = Outage(runtime, password, admin, str(real.database))
                try:
                    yield it
                finally:
                    it.up()  # the runtime closes on a database that answers
        finally:
            admin.dispose()


def test_ready_answers_503_while_the_database_is_unreachable_and_200_once_it_is_back(tmp_path: Path) -> None:
    with outage(tmp_path) as db:
        client = TestClient(create_app(db.runtime), raise_server_exceptions=False)
        assert client.get("/ready").json() == {"ok": True}
        # When the database stops answering
        db.down()
        down = client.get("/ready")
        # Then /ready says so, and why, in the one error shape; /health (the process) still answers
        assert down.status_code == 503
        error = down.json()["error"]
        assert error["code"] == "server.not_ready" and error["message"] == "the database does not answer"
        assert "IONFLUX_DATABASE_URL" in error["hint"]
        assert db.password not in down.text and not any(leak in down.text for leak in LEAKS)
        assert client.get("/health").json()["ok"] is True
        # When it is back, so is readiness (the pool's dead connections are dropped on the way)
        db.up()
        assert _until(lambda: client.get("/ready"), 200).status_code == 200


def test_an_unexpected_failure_answers_500_with_an_incident_id_in_the_log_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with outage(tmp_path) as db:
        accounts = Accounts(db.runtime.db)
        owner = accounts.create_owner("Ana", email="ana@example.com", password="ana-password-1")
        token = accounts.issue_token(owner, "read", "read")[1]
        client = TestClient(create_app(db.runtime), raise_server_exceptions=False)
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/flows", headers=headers).status_code == 200
        # When the database goes away under a route (nothing in the API expects it)
        db.down()
        with caplog.at_level(logging.ERROR, logger="ionflux.api"):
            failed = client.get("/api/v1/flows", headers=headers)
        # Then the answer is a 500 in the one error shape, with an incident id and a hint, and nothing more
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert set(error) == {"code", "message", "hint"} and error["code"] == "server.error"
        found = INCIDENT.search(error["message"])
        assert found is not None, error
        incident = found.group(1)
        assert incident in error["hint"]
        assert db.password not in failed.text and token not in failed.text
        assert not any(leak in failed.text for leak in LEAKS), failed.text
        # and the server's log has the incident id with the whole story (the traceback)
        (record,) = [r for r in caplog.records if incident in r.getMessage()]
        assert record.exc_info is not None and "GET /api/v1/flows" in record.getMessage()
        db.up()
        assert _until(lambda: client.get("/api/v1/flows", headers=headers), 200).status_code == 200


def test_an_exception_that_carries_a_secret_never_shows_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Given a route that fails with a secret's value in its exception (no route of the product fails on purpose,
    # so this one is added for the test, to the real app, behind the real error handlers)
    with api("embedded", tmp_path, start=False) as embedded:
        secret = {"value": "sk_live_51_never_shown"}
        assert embedded.call("PUT", "/api/v1/secrets/shop_token", "write", json=secret).status_code == 200
        app = embedded.client.app
        assert isinstance(app, FastAPI)

        def leaky() -> None:
            value = embedded.runtime.orchestrator.secrets.resolve(["shop_token"], embedded.owner)["shop_token"]
            raise RuntimeError(f"the shop refused token {value}")

        app.add_api_route("/api/v1/leaky", leaky, methods=["GET"])
        # When it is asked
        with caplog.at_level(logging.ERROR, logger="ionflux.api"):
            answer = embedded.call("GET", "/api/v1/leaky", "read")
        # Then the answer says only that it failed, and where to look
        assert answer.status_code == 500 and answer.json()["error"]["code"] == "server.error"
        assert "sk_live_51_never_shown" not in answer.text and "RuntimeError" not in answer.text
        assert INCIDENT.search(answer.json()["error"]["message"]) is not None
        assert any(r.exc_info is not None for r in caplog.records)  # the log keeps what the answer does not


@pytest.fixture(params=BACKENDS)
def a(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    with api(request.param, tmp_path) as value:
        yield value


def test_the_audit_log_says_who_changed_what_and_when(a: Api) -> None:
    tokens = {t["name"]: t["prefix"] for t in a.call("GET", "/api/v1/tokens", "read").json()["items"]}
    started = datetime.now(UTC)
    # Given changes made with the write token, the admin token and a browser session
    assert a.call("POST", "/api/v1/flows", "write", json={"yaml": GATED}).status_code == 201
    assert a.call("PUT", "/api/v1/secrets/shop_token", "write", json={"value": "v"}).status_code == 200
    assert a.call("POST", "/api/v1/tokens", "admin", json={"name": "ci", "scope": "read"}).status_code == 201
    session = a.client.post("/api/v1/login", json={"email": "ana@example.com", "password": "ana-password-1"})
    csrf = {"X-CSRF-Token": session.json()["csrf"]}
    assert a.client.delete("/api/v1/secrets/shop_token", headers=csrf).status_code == 204
    a.client.cookies.clear()
    finished = datetime.now(UTC)
    # When the owner reads the audit log
    entries = a.call("GET", "/api/v1/audit", "read").json()["items"]
    # Then each change is there, newest first, with the credential that made it and the time it was made
    assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
        ("secret.delete", "shop_token", "session"),
        ("auth.login", "ana@example.com", "session"),
        ("token.create", entries[2]["target"], f"token {tokens['admin token']}…"),
        ("secret.set", "shop_token", f"token {tokens['write token']}…"),
        ("flow.save", "gated", f"token {tokens['write token']}…"),
    ]
    times = [datetime.fromisoformat(e["at"]) for e in entries]
    assert all(started <= t <= finished for t in times), (started, times, finished)
    assert times == sorted(times, reverse=True)
    # and another owner's log has none of it
    assert a.call("GET", "/api/v1/audit", "other").json()["items"] == []


def test_a_nul_character_is_refused_the_same_on_both_databases(a: Api) -> None:
    session = a.call("POST", "/api/v1/copilot/sessions", "write", json={}).json()["id"]
    for method, path, body in (
        ("GET", "/api/v1/flows?q=%00", None),
        ("GET", "/api/v1/runs/%00", None),
        ("POST", "/api/v1/tokens", {"name": "a\u0000b", "scope": "read"}),
        ("POST", f"/api/v1/copilot/sessions/{session}/messages", {"text": "a\u0000b"}),
        ("POST", "/api/v1/login", {"email": "ana@example.com\u0000", "password": "ana-password-1"}),
    ):
        answer = a.call(method, path, "admin", json=body, headers={"Accept": "application/json"})
        assert answer.status_code == 422, f"{method} {path}: {answer.text}"
        error = answer.json()["error"]
        assert error["code"] == "request.invalid" and "NUL" in error["message"] and error["hint"], error
    # the text \u0000 (an escaped backslash) and a percent sign are ordinary
    for name in ("a\\u0000b", "100%00"):
        assert a.call("POST", "/api/v1/tokens", "admin", json={"name": name, "scope": "read"}).status_code == 201


def test_the_ui_shows_the_open_demo_badge_only_while_the_open_demo_serves_the_page(tmp_path: Path) -> None:
    with running("embedded", tmp_path, start=False) as rt:
        accounts = Accounts(rt.db)
        accounts.create_owner("Ana", email="ana@example.com", password="ana-password-1")
        demo = create_app(rt, settings=Settings(open_local=True, bind="127.0.0.1:8080"))
        # Given the open demo, when this machine opens a page without signing in: the badge says so
        local = TestClient(demo, client=("127.0.0.1", 50000), base_url="http://127.0.0.1:8080")
        page = local.get("/ui/flows")
        assert page.status_code == 200
        assert re.search(r'<strong class="demo"[^>]*>OPEN DEMO</strong>', page.text), page.text[:2000]
        # When the same machine signs in, the page names the owner instead
        local.post("/api/v1/login", json={"email": "ana@example.com", "password": "ana-password-1"})
        signed_in = local.get("/ui/flows")
        assert signed_in.status_code == 200 and "OPEN DEMO" not in signed_in.text and "Ana" in signed_in.text
        # Another machine, or the demo off: no demo, so no badge (the page asks to sign in)
        for client in (
            TestClient(demo, client=("192.0.2.7", 50000), base_url="http://127.0.0.1:8080"),
            TestClient(
                create_app(rt, settings=Settings(bind="127.0.0.1:8080")),
                client=("127.0.0.1", 50000),
                base_url="http://127.0.0.1:8080",
            ),
        ):
            stranger = client.get("/ui/flows", follow_redirects=False)
            assert stranger.status_code == 303 and "OPEN DEMO" not in stranger.text


def _ionflux(home: Path, *args: str, **settings: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IONFLUX_")}
    env.update({f"IONFLUX_{name.upper()}": value for name, value in settings.items()})
    env.update(IONFLUX_HOME=str(home), PYTHONPATH=str(ROOT), COLUMNS="200")
    command = [sys.executable, "-m", "api.cli", *args]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_ionflux_up_prints_the_open_demo_banner_only_on_loopback(tmp_path: Path) -> None:
    # scripts/start is `ionflux up` with the open demo on
    assert 'IONFLUX_OPEN_LOCAL="${IONFLUX_OPEN_LOCAL:-true}"' in (ROOT / "scripts" / "start").read_text()
    # Given the open demo asked for on loopback and on every address (both at once: each takes seconds)
    servers = {
        bind: _ionflux(tmp_path / bind.replace(":", "_"), "up", "--seconds", "1", open_local="true", bind=bind)
        for bind in ("127.0.0.1:0", "0.0.0.0:0")
    }
    printed = {bind: server.communicate(timeout=120)[0] for bind, server in servers.items()}
    assert all(server.returncode == 0 for server in servers.values()), printed
    # Then loopback prints the warning in its banner, and any other address refuses to open the demo
    loopback = " ".join(printed["127.0.0.1:0"].split())
    assert re.search(r"OPEN DEMO: http://127\.0\.0\.1:\d+/api/v1 answers requests from this machine", loopback)
    assert "Unset it before exposing the server" in loopback
    exposed = " ".join(printed["0.0.0.0:0"].split())
    assert "OPEN DEMO" not in exposed and "IONFLUX_OPEN_LOCAL ignored" in exposed


def test_ionflux_api_answers_the_api_on_its_own(tmp_path: Path) -> None:
    # Given `ionflux api` alone, on a free loopback port with a fresh database
    port = free_port()
    server = _ionflux(tmp_path / "home", "api", "--seconds", "90", bind=f"127.0.0.1:{port}")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "ionflux api did not start"
                time.sleep(0.2)
            # When the first owner is set up and asks with its token
            first = {"name": "Ana", "email": "ana@example.com", "password": "a-long-password"}
            token = client.post("/api/v1/setup", json=first).json()["token"]["token"]
            headers = {"Authorization": f"Bearer {token}"}
            me = client.get("/api/v1/me", headers=headers)
            flows = client.get("/api/v1/flows", headers=headers)
            anonymous = client.get("/api/v1/me")
        # Then /api/v1 answers: who asks, their (empty) flows, and a stranger is refused
        assert me.status_code == 200 and me.json()["owner"]["email"] == "ana@example.com"
        assert flows.status_code == 200 and flows.json()["items"] == []
        assert anonymous.status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)  # it stops on SIGTERM, as under a process manager
        try:
            output = server.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0]
    assert server.returncode == 0, output
    assert f"ionflux api: HTTP at http://127.0.0.1:{port}" in output
    assert "the runs started here wait for `ionflux up`" in " ".join(output.split())  # no broker: said at start
