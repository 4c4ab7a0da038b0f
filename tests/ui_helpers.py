"""The web UI under test without a browser: a runtime, its app in a TestClient (the open demo off, so pages need
a session), the UI's accounts on ``app.state.ui_accounts``, and helpers to sign in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.accounts import Accounts
from api.app import create_app
from api.settings import Settings
from api.ui_accounts import UiAccounts
from api.ui_jules import UiJules
from api.v1.deps import COOKIE
from engine.runtime.runtime import Runtime
from tests.runtime_helpers import running

PASSWORDS = {"ana@example.com": "ana-password-1", "rui@example.com": "rui-password-1"}


@dataclass
class Ui:
    runtime: Runtime
    accounts: Accounts
    client: TestClient

    def sign_in(self, email: str = "ana@example.com") -> str:
        """Sign in through the login form; -> the session's CSRF token."""
        answer = self.client.post("/ui/login", data={"email": email, "password": PASSWORDS[email]})
        assert answer.status_code == 303, answer.text
        principal = self.accounts.by_session(self.client.cookies[COOKIE])
        assert principal is not None and principal.csrf is not None
        return principal.csrf


@contextmanager
def ui(tmp: Path, *, owners: bool = True) -> Iterator[Ui]:
    with running("embedded", tmp, start=False) as runtime:
        accounts = Accounts(runtime.db)
        if owners:
            accounts.create_owner("Ana", email="ana@example.com", password=PASSWORDS["ana@example.com"], role="admin")
            accounts.create_owner("Rui", email="rui@example.com", password=PASSWORDS["rui@example.com"])
        app = create_app(runtime)
        if getattr(app.state, "ui_accounts", None) is None:  # until api.app wires api.ui_accounts itself
            app.state.ui_accounts = UiAccounts(accounts)
        with TestClient(app, follow_redirects=False) as client:
            yield Ui(runtime, accounts, client)


def open_demo_app(runtime: Runtime) -> FastAPI:
    """The app as ``./scripts/start`` serves it: the open local demo on, bound to loopback."""
    return create_app(runtime, settings=Settings(open_local=True, bind="127.0.0.1:8080"))


@contextmanager
def local_client(
    app: FastAPI, *, raise_server_exceptions: bool = True, follow_redirects: bool = True
) -> Iterator[TestClient]:
    """A TestClient whose requests come from this machine (what the open local demo needs)."""
    with TestClient(
        app,
        client=("127.0.0.1", 50000),
        base_url="http://127.0.0.1:8080",  # the name a browser here asks for (the open demo checks it)
        raise_server_exceptions=raise_server_exceptions,
        follow_redirects=follow_redirects,
    ) as client:
        yield client


@contextmanager
def builder_demo(tmp: Path) -> Iterator[tuple[TestClient, Runtime]]:
    """A browser on this machine and the open demo's app with the Builder's co-pilot; redirects not followed."""
    with running("embedded", tmp) as runtime:
        app = open_demo_app(runtime)
        app.state.ui_jules = UiJules(runtime, Settings(open_local=True, bind="127.0.0.1:8080"))
        with local_client(app, follow_redirects=False) as client:
            yield client, runtime
