"""The UI's sign-in pages, backed by the API's accounts (ui.accounts.Accounts, on ``app.state.ui_accounts``)."""

from __future__ import annotations

from dataclasses import dataclass

from api.accounts import SESSION_DAYS, Accounts
from api.v1.deps import COOKIE


@dataclass(frozen=True)
class UiAccounts:
    accounts: Accounts
    cookie: str = COOKIE
    max_age: int = SESSION_DAYS * 24 * 3600

    def login(self, email: str, password: str, client: str = "") -> str | None:
        done = self.accounts.login(email, password, client=client)
        return None if done is None else done[0]

    def needs_setup(self) -> bool:
        return self.accounts.needs_setup()

    def setup(self, name: str, email: str, password: str) -> str:
        """The first owner, an operator as ``POST /api/v1/setup`` makes them (atomically: of two first runs at
        once, one gets ``setup.done``), signed in at once."""
        self.accounts.setup(name, email, password)
        done = self.accounts.login(email, password)
        assert done is not None  # just created with this password
        return done[0]

    def logout(self, cookie: str) -> None:
        self.accounts.logout(cookie)
