"""Signing in, as the UI's pages need it: a small protocol the composition root implements.

The UI does not know how owners, passwords and sessions are stored (that is the API's ``Accounts``); ``api.app``
puts an object with this shape on ``app.state.ui_accounts`` (``api.ui_accounts``), so the login and first-run
pages work as plain HTML forms, without JavaScript and without importing ``api``.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import Request


class Accounts(Protocol):
    cookie: str  # the session cookie's name
    max_age: int  # how long a session lasts, in seconds (the cookie's Max-Age)

    def login(self, email: str, password: str, client: str = "") -> str | None:
        """A new session's cookie value for the right email and password; None otherwise. Raises an
        ``IonfluxError`` saying how long to wait when ``client`` (its address) or the email failed too often."""
        ...

    def needs_setup(self) -> bool:
        """True until the installation's first owner who can sign in exists."""
        ...

    def setup(self, name: str, email: str, password: str) -> str:
        """Create the first owner (an operator) and sign them in: the session's cookie value. Raises an
        ``IonfluxError`` saying why when it is refused (set up already, a short password, …)."""
        ...

    def logout(self, cookie: str) -> None:
        """End the session (an unknown cookie is ignored)."""
        ...


class AccountsMissing(RuntimeError):
    """Raised when a sign-in page is asked for but the composition root did not set ``app.state.ui_accounts``."""


def accounts(request: Request) -> Accounts:
    """The installation's accounts, as the composition root gave them (a FastAPI dependency)."""
    found: Accounts | None = getattr(request.app.state, "ui_accounts", None)
    if found is None:
        raise AccountsMissing("app.state.ui_accounts is not set: api.app.create_app sets it (api.ui_accounts)")
    return found
