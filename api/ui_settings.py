"""The Settings screen's tokens and model settings (ui.settings.OwnerSettings, on ``app.state.ui_settings``): the
API's accounts, with a token's name and scope checked by the same model ``POST /api/v1/tokens`` reads its body
with, and the alias Jules uses from the server's settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from api.accounts import Accounts
from api.settings import Settings
from api.v1.account import NewToken
from ui.settings import Issued, Refused, Token


@dataclass
class UiSettings:
    accounts: Accounts
    settings: Settings | None = None  # None: read from the environment on first use

    def tokens(self, owner: str) -> list[Token]:
        return [_token(t) for t in self.accounts.tokens(owner)]

    def issue_token(self, owner: str, name: str, scope: str) -> Issued:
        try:
            asked = NewToken(name=name, scope=scope)  # pydantic checks the scope is one of the three
        except ValidationError as e:
            raise _refusal(e) from None
        token_id, secret = self.accounts.issue_token(owner, asked.name, asked.scope)
        made = next(t for t in self.tokens(owner) if t.id == token_id)
        return Issued(made, secret)

    def revoke_token(self, owner: str, token_id: str) -> bool:
        return self.accounts.revoke(owner, token_id)

    def jules_model(self) -> str | None:
        if self.settings is None:
            self.settings = Settings()
        return self.settings.model or None


def _token(row: dict[str, Any]) -> Token:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    return Token(
        row["id"],
        row["name"],
        row["prefix"],
        row["scope"],
        when(row["created_at"]),
        when(row["last_used_at"]),
        when(row["revoked_at"]),
    )


def _refusal(error: ValidationError) -> Refused:
    """The first problem pydantic found, as a sentence that says how to fix it."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "name"
    limits = first.get("ctx") or {}
    if field == "scope":
        return Refused("scope", "Choose the token's scope: read, write or admin.")
    if first["type"] == "string_too_short":
        return Refused("name", "Give the token a name: what will use it, e.g. “deploy script”.")
    if first["type"] == "string_too_long":
        return Refused("name", f"The token's name is too long: use {limits.get('max_length')} characters at most.")
    return Refused(field, f"The token's {field} is not valid: {first['msg']}.")
