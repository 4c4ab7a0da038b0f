"""The web UI under test without a browser: a runtime, its app in a TestClient (the open demo off, so pages need
a session), the UI's accounts on ``app.state.ui_accounts``, and helpers to sign in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from api.accounts import Accounts
from api.app import create_app
from api.ui_accounts import UiAccounts
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
