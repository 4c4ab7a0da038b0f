"""The owner's API tokens and the installation's model settings, as the Settings screen needs them: a small protocol
the composition root implements.

Tokens live in the API's accounts and the model settings in its environment (``IONFLUX_MODEL``), neither of which
the UI may import (import-linter); ``api.app`` puts an object with this shape on ``app.state.ui_settings``
(``api.ui_settings``). A token is made by the same rules as ``POST /api/v1/tokens``: a refusal is :class:`Refused`,
naming the form field to fix. Secrets need no protocol: they are the engine's (``engine.runtime.secrets``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from fastapi import Request

SCOPES = ("read", "write", "admin")  # what a token may do, smallest first (as ui.visitor.Visitor.may orders them)


@dataclass(frozen=True)
class Token:
    """An API token as it may be shown: never the token itself, which is shown once, when it is made."""

    id: str
    name: str
    prefix: str  # its first characters, to tell tokens apart ("ifx_Ab12cd")
    scope: str
    created_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Issued:
    token: Token
    secret: str  # the token itself: shown once, then only its prefix


class Refused(ValueError):
    """Raised when a token cannot be made as asked; ``field`` is the form field to fix (``name`` or ``scope``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class OwnerSettings(Protocol):
    def tokens(self, owner: str) -> list[Token]:
        """The owner's tokens, oldest first, revoked ones included."""
        ...

    def issue_token(self, owner: str, name: str, scope: str) -> Issued:
        """A new token of the owner's (:class:`Refused` for a name or scope the API would refuse)."""
        ...

    def revoke_token(self, owner: str, token_id: str) -> bool:
        """Revoke the owner's active token ``token_id``; False if there is none (another owner's, revoked)."""
        ...

    def jules_model(self) -> str | None:
        """The model alias Jules uses (``IONFLUX_MODEL``); None: the offline planner."""
        ...


class SettingsMissing(RuntimeError):
    """Raised when the Settings screen is asked for but the composition root did not set ``app.state.ui_settings``."""


def owner_settings(request: Request) -> OwnerSettings:
    """The installation's token and model settings, as the composition root gave them (a FastAPI dependency)."""
    found: OwnerSettings | None = getattr(request.app.state, "ui_settings", None)
    if found is None:
        raise SettingsMissing("app.state.ui_settings is not set: api.app.create_app sets it (api.ui_settings)")
    return found
