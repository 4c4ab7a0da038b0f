"""Owners, tokens, sign-in and the audit log (``/api/v1``).

The session cookie is HttpOnly (page scripts cannot read it) and SameSite=Lax (other sites' forms and scripts do
not carry it), and Secure when the request came over HTTPS, directly or through a TLS proxy whose
``X-Forwarded-Proto`` uvicorn trusts. Over plain HTTP it cannot be Secure: a browser would not send it back and
nobody could sign in, so ``ionflux up`` on http://127.0.0.1 works; on loopback the cookie never crosses a network.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from api.accounts import Accounts, SignInLimited
from api.v1.deps import (
    COOKIE,
    AccountsDep,
    Admin,
    Cursor,
    Limit,
    Operator,
    Page,
    Reader,
    RequestBody,
    after,
    check_csrf,
    page,
    who,
)
from api.v1.errors import ApiError, Problem
from ui.visitor import named_for_us

router = APIRouter(tags=["account"])
# an address with one @ and no spaces (spelled out: JSON Schema and Python disagree on what \s matches)
EMAIL = r"^[^@ \t\r\n]+@[^@ \t\r\n]+$"


class OwnerOut(BaseModel):
    id: str
    name: str
    email: str | None
    role: Literal["owner", "admin"]
    can_sign_in: bool
    created_at: str


class Me(BaseModel):
    owner: OwnerOut
    scope: Literal["read", "write", "admin"]
    actor: str


class TokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    scope: Literal["read", "write", "admin"]
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class NewToken(RequestBody):
    name: str = Field(min_length=1, max_length=120)
    scope: Literal["read", "write", "admin"] = "read"


class IssuedToken(BaseModel):
    id: str
    token: str = Field(description="shown once: store it now")
    scope: str


class NewOwner(RequestBody):
    name: str = Field(min_length=1, max_length=120)
    email: str | None = Field(None, max_length=254, pattern=EMAIL)
    password: str | None = Field(None, min_length=10, max_length=200)
    role: Literal["owner", "admin"] = "owner"


class Setup(RequestBody):
    name: str = Field(min_length=1, max_length=120)
    email: str = Field(max_length=254, pattern=EMAIL)
    password: str = Field(min_length=10, max_length=200)


class SetupDone(BaseModel):
    owner: OwnerOut
    token: IssuedToken


class Login(RequestBody):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


class Session(BaseModel):
    owner: OwnerOut
    csrf: str = Field(description="echo it in X-CSRF-Token on every change made with the session cookie")


class AuditEntry(BaseModel):
    id: str
    actor: str
    action: str
    target: str
    detail: dict[str, object] | None
    at: str


class SetupState(BaseModel):
    needs_setup: bool


class TokenPage(Page[TokenOut]):
    """The owner's tokens (revoked ones too), oldest first."""


class OwnerPage(Page[OwnerOut]):
    """Every owner, oldest first."""


class AuditPage(Page[AuditEntry]):
    """The owner's changes, newest first."""


@router.get("/setup", response_model=SetupState)
def setup_state(accounts: AccountsDep) -> SetupState:
    """Whether this installation still needs its first owner."""
    return SetupState(needs_setup=accounts.needs_setup())


@router.post(
    "/setup",
    response_model=SetupDone,
    status_code=201,
    responses={
        403: {"model": Problem, "description": "sent to a name that is not this server's (setup.elsewhere)"},
        409: {"model": Problem, "description": "the installation has its first owner already (setup.done)"},
    },
)
def setup(body: Setup, request: Request, accounts: AccountsDep) -> SetupDone:
    """First run: create the first owner (an operator) and an admin token. Refused once an owner exists; of two
    calls at the same time, one succeeds and the other is refused. Only at one of this server's own names (an IP
    address, localhost, or IONFLUX_PUBLIC_URL's host), so a DNS-rebound page cannot make itself the operator."""
    if accounts.needs_setup() and not named_for_us(request):
        raise ApiError(
            403,
            "setup.elsewhere",
            "first-run setup is done at this server's own address, not at the name this request was sent to",
            hint="use an IP address, localhost, or the host of IONFLUX_PUBLIC_URL (set it to the address users reach)",
        )
    # a refusal (setup.done) is an AccessError, which the error handlers answer as 409 with its code
    owner_id, issued = accounts.setup(body.name, body.email, body.password, token="first token")
    owner = accounts.owner(owner_id)
    assert owner is not None and issued is not None
    token_id, secret = issued
    return SetupDone(owner=OwnerOut(**owner), token=IssuedToken(id=token_id, token=secret, scope="admin"))


@router.post(
    "/login",
    response_model=Session,
    responses={
        401: {"model": Problem, "description": "wrong email or password"},
        429: {"model": Problem, "description": "too many failed attempts lately (Retry-After says how long to wait)"},
    },
)
def login(body: Login, request: Request, response: Response, accounts: AccountsDep) -> Session:
    """Sign in: a session cookie and its CSRF token. Failed attempts are limited per client address and per email
    (429 with Retry-After), and recorded in the owner's audit log."""
    try:
        done = accounts.login(body.email, body.password, client=request.client.host if request.client else "")
    except SignInLimited as e:
        raise ApiError(429, e.code, e.message, hint=e.hint, headers={"Retry-After": str(e.retry_after)}) from None
    if done is None:
        raise ApiError(
            401,
            "auth.invalid",
            "wrong email or password",
            hint="check both; an operator can set a new password (or `ionflux owner password EMAIL` on the server)",
        )
    secret, principal = done
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        max_age=14 * 24 * 3600,
        path="/",
    )
    owner = accounts.owner(principal.owner_id)
    assert owner is not None and principal.csrf is not None
    return Session(owner=OwnerOut(**owner), csrf=principal.csrf)


@router.post(
    "/logout",
    status_code=204,
    responses={403: {"model": Problem, "description": "the session cookie came without its X-CSRF-Token"}},
)
def logout(request: Request, response: Response, accounts: AccountsDep) -> Response:
    """End the browser session: it needs the session's CSRF token (``X-CSRF-Token``), like every change made with
    the cookie, so another site cannot sign a user out. A caller with no live session (an API token, an expired
    cookie) has nothing to end: 204, and the cookie is cleared."""
    secret = request.cookies.get(COOKIE)
    session = accounts.by_session(secret) if secret else None
    if secret and session is not None:
        check_csrf(request, session)
        accounts.logout(secret)
    response.delete_cookie(COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/me", response_model=Me)
def me(principal: Reader, accounts: AccountsDep) -> Me:
    owner = accounts.owner(principal.owner_id)
    assert owner is not None
    return Me(owner=OwnerOut(**owner), scope=principal.scope, actor=principal.actor)


@router.get("/tokens", response_model=TokenPage)
def tokens(principal: Reader, accounts: AccountsDep, limit: Limit = 50, cursor: Cursor = None) -> TokenPage:
    """Your tokens, oldest first (never the token itself: only its first characters)."""
    found = accounts.tokens(principal.owner_id, limit=limit + 1, after=after(cursor, "tokens"))
    items, next_cursor = page(found, limit, lambda t: str(t["id"]), "tokens")
    return TokenPage(items=[TokenOut(**t) for t in items], next_cursor=next_cursor)


@router.post("/tokens", response_model=IssuedToken, status_code=201)
def new_token(body: NewToken, principal: Admin, accounts: AccountsDep) -> IssuedToken:
    """A new token of the caller's owner (the token itself is in the answer, once)."""
    token_id, secret = accounts.issue_token(principal.owner_id, body.name, body.scope)
    accounts.audit(principal, "token.create", token_id, {"name": body.name, "scope": body.scope})
    return IssuedToken(id=token_id, token=secret, scope=body.scope)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, principal: Admin, accounts: AccountsDep) -> Response:
    if not accounts.revoke(principal.owner_id, token_id):
        raise ApiError(
            404, "token.not_found", f"no active token {token_id!r} of yours", hint="GET /api/v1/tokens lists yours"
        )
    accounts.audit(principal, "token.revoke", token_id)
    return Response(status_code=204)


@router.get("/owners", response_model=OwnerPage)
def list_owners(_op: Operator, accounts: AccountsDep, limit: Limit = 50, cursor: Cursor = None) -> OwnerPage:
    """Every owner of this installation, oldest first (operators only)."""
    items, next_cursor = page(
        accounts.owners(limit=limit + 1, after=after(cursor, "owners")), limit, lambda o: str(o["id"]), "owners"
    )
    return OwnerPage(items=[OwnerOut(**o) for o in items], next_cursor=next_cursor)


@router.post("/owners", response_model=OwnerOut, status_code=201)
def create_owner(body: NewOwner, principal: Operator, accounts: AccountsDep) -> OwnerOut:
    owner_id = accounts.create_owner(body.name, email=body.email, password=body.password, role=body.role)
    accounts.audit(principal, "owner.create", owner_id, {"name": body.name, "role": body.role})
    owner = accounts.owner(owner_id)
    assert owner is not None
    return OwnerOut(**owner)


OwnerId = Annotated[str, Path(min_length=1, max_length=26, description="an owner's id (GET /api/v1/owners)")]


class NewPassword(RequestBody):
    password: str = Field(min_length=10, max_length=200, description="at least 10 characters")


def _someone(accounts: Accounts, owner_id: str) -> None:
    if accounts.owner(owner_id) is None:
        raise ApiError(404, "owner.not_found", f"no owner {owner_id!r}", hint="GET /api/v1/owners lists them")


@router.put("/owners/{owner_id}/password", status_code=204, responses={404: {"model": Problem}})
def reset_password(owner_id: OwnerId, body: NewPassword, principal: Operator, accounts: AccountsDep) -> Response:
    """Set an owner's password (operators only): their browser sessions end; their tokens stay."""
    _someone(accounts, owner_id)
    accounts.set_password(owner_id, body.password)
    accounts.audit(principal, "owner.password", owner_id)
    return Response(status_code=204)


@router.post("/owners/{owner_id}/lock", status_code=204, responses={404: {"model": Problem}})
def lock_owner(owner_id: OwnerId, principal: Operator, accounts: AccountsDep) -> Response:
    """Shut an owner out (operators only): no sign-in, sessions ended, tokens revoked; their flows and runs stay.
    A new password (PUT …/password) lets them in again."""
    _someone(accounts, owner_id)
    if owner_id == principal.owner_id:
        raise ApiError(409, "owner.refused", "you cannot lock yourself out", hint="ask another operator")
    accounts.lock(owner_id)
    accounts.audit(principal, "owner.lock", owner_id)
    return Response(status_code=204)


# `before` (an entry id) paged the audit log before every list took `cursor`; kept for the scripts that use it
Before = Annotated[
    str | None,
    Query(max_length=26, deprecated=True, description="deprecated: use `cursor`; an entry id, older entries follow"),
]


@router.get("/audit", response_model=AuditPage)
def audit(
    principal: Reader, accounts: AccountsDep, limit: Limit = 50, cursor: Cursor = None, before: Before = None
) -> AuditPage:
    """Your changes, newest first."""
    if cursor is not None and before is not None:
        raise ApiError(
            422,
            "request.invalid",
            "query: cursor and before both say where to start",
            hint="send cursor only (before is its deprecated older form)",
            location=[{"field": "query.before", "message": "not with cursor"}],
        )
    found = accounts.audit_log(principal.owner_id, limit + 1, after(cursor, "audit") or before)
    items, next_cursor = page(found, limit, lambda e: str(e["id"]), "audit")
    return AuditPage(items=[AuditEntry(**e) for e in items], next_cursor=next_cursor)


__all__ = ["router", "who"]
