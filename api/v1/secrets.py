"""The owner's secrets (``/api/v1/secrets``): set, list and delete by name. Values are write-only: no answer, log
line or audit entry ever carries one; the list shows names and times only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from api.v1.deps import AccountsDep, Admin, Cursor, Limit, Page, Reader, RequestBody, RuntimeDep, Writer, after, page
from api.v1.errors import ApiError, Problem
from engine.runtime.secrets import MAX_VALUE, NAME_PATTERN

router = APIRouter(tags=["secrets"])

Name = Annotated[str, Path(pattern=NAME_PATTERN, description="letters, digits and _, starting with a letter or _")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": why}
    for status, why in (
        (401, "no valid token or session"),
        (403, "the token's scope is too small"),
        (422, "the request is not valid"),
    )
}


class SecretOut(BaseModel):
    """A secret as it may be shown: its name and when it was set, never its value."""

    name: str
    created_at: str
    updated_at: str


class SecretPage(Page[SecretOut]):
    """The owner's secrets, by name."""


class SecretValue(RequestBody):
    value: str = Field(min_length=1, max_length=MAX_VALUE, description="write-only: never returned")


@router.get("/secrets", response_model=SecretPage, responses=_ERRORS)
def list_secrets(principal: Reader, runtime: RuntimeDep, limit: Limit = 50, cursor: Cursor = None) -> SecretPage:
    """Your secrets by name (values are never returned)."""
    # an owner has tens of secrets, not thousands: the listing is read whole and paged here, sorted in Python so
    # that the order and the cursor's comparison agree on every database (PostgreSQL's collation is not bytewise)
    start = after(cursor, "secrets")
    listing = sorted(runtime.orchestrator.secrets.listing(principal.owner_id), key=lambda s: s[0])
    found = [s for s in listing if start is None or s[0] > start]
    items, next_cursor = page(found[: limit + 1], limit, lambda s: s[0], "secrets")
    return SecretPage(
        items=[
            SecretOut(name=name, created_at=_iso(created), updated_at=_iso(updated)) for name, created, updated in items
        ],
        next_cursor=next_cursor,
    )


@router.put("/secrets/{name}", response_model=SecretOut, responses=_ERRORS)
def set_secret(
    name: Name, body: SecretValue, principal: Writer, runtime: RuntimeDep, accounts: AccountsDep
) -> SecretOut:
    """Create or replace the secret ``name``; the answer and the audit log name it, never its value."""
    store = runtime.orchestrator.secrets
    existed = name in store.names(principal.owner_id)
    store.set(name, body.value, principal.owner_id)
    accounts.audit(principal, "secret.set", name, {"created": not existed})
    return next(
        SecretOut(name=n, created_at=_iso(c), updated_at=_iso(u))
        for n, c, u in store.listing(principal.owner_id)
        if n == name
    )


@router.delete(
    "/secrets/{name}",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 404: {"model": Problem, "description": "the owner has no secret of this name"}},
)
def delete_secret(name: Name, principal: Admin, runtime: RuntimeDep, accounts: AccountsDep) -> Response:
    """Delete the secret ``name`` (a step that reads it then fails, saying which secret is not set)."""
    if not runtime.orchestrator.secrets.delete(name, principal.owner_id):
        raise ApiError(404, "secret.not_found", f"you have no secret {name!r}", hint="GET /api/v1/secrets lists them")
    accounts.audit(principal, "secret.delete", name)
    return Response(status_code=204)


def _iso(moment: datetime) -> str:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()  # SQLite hands back naive UTC
