"""An API under test: a runtime (SQLite or PostgreSQL + Redis), its FastAPI app in a TestClient, and two owners
with a token of each scope, so every test can ask as anyone the authorisation matrix names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fastapi.testclient import TestClient

from api.accounts import Accounts
from api.app import create_app
from engine.runtime.runtime import Runtime
from tests.runtime_helpers import running

BACKENDS = ["embedded", "postgres"]


class Answer(Protocol):
    """What the tests read of a TestClient's response (an httpx or httpx2 one, whichever starlette found)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


@dataclass
class Api:
    runtime: Runtime
    client: TestClient
    owner: str  # the owner the tests act as
    other: str  # another owner, whose things must stay invisible
    tokens: dict[str, str] = field(default_factory=dict)  # read/write/admin (owner), other, operator

    def as_(self, who: str) -> dict[str, str]:
        """Headers for ``who``: read, write, admin, other (another owner's admin token), operator, anonymous."""
        return {} if who == "anonymous" else {"Authorization": f"Bearer {self.tokens[who]}"}

    def call(self, method: str, path: str, who: str = "admin", **kw: Any) -> Any:
        headers = {**self.as_(who), **kw.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kw)


@contextmanager
def api(kind: str, tmp: Path, *, start: bool = True, **overrides: Any) -> Iterator[Api]:
    with running(kind, tmp, start=start, **overrides) as rt:
        accounts = Accounts(rt.db)
        operator = accounts.create_owner("Operator", email="op@example.com", password="operator-pass-1", role="admin")
        owner = accounts.create_owner("Ana", email="ana@example.com", password="ana-password-1")
        other = accounts.create_owner("Rui", email="rui@example.com", password="rui-password-1")
        tokens = {
            scope: accounts.issue_token(owner, f"{scope} token", scope)[1] for scope in ("read", "write", "admin")
        }
        tokens["other"] = accounts.issue_token(other, "other", "admin")[1]
        tokens["operator"] = accounts.issue_token(operator, "operator", "admin")[1]
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            yield Api(rt, client, owner, other, tokens)
