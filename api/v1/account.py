"""Owners, tokens, sign-in and the audit log (``/api/v1``)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from api.v1.deps import COOKIE, AccountsDep, Admin, Limit, Operator, Reader, who
from api.v1.errors import ApiError

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


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    scope: Literal["read", "write", "admin"] = "read"


class IssuedToken(BaseModel):
    id: str
    token: str = Field(description="shown once: store it now")
    scope: str


class NewOwner(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    email: str | None = Field(None, max_length=254, pattern=EMAIL)
    password: str | None = Field(None, min_length=10, max_length=200)
    role: Literal["owner", "admin"] = "owner"


class Setup(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    email: str = Field(max_length=254, pattern=EMAIL)
    password: str = Field(min_length=10, max_length=200)


class SetupDone(BaseModel):
    owner: OwnerOut
    token: IssuedToken


class Login(BaseModel):
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


@router.get("/setup", response_model=SetupState)
def setup_state(accounts: AccountsDep) -> SetupState:
    """Whether this installation still needs its first owner."""
    return SetupState(needs_setup=accounts.needs_setup())


@router.post("/setup", response_model=SetupDone, status_code=201)
def setup(body: Setup, accounts: AccountsDep) -> SetupDone:
    """First run: create the first owner (an operator) and an admin token. Refused once an owner exists."""
    if not accounts.needs_setup():
        raise ApiError(409, "setup.done", "this installation has its first owner", hint="sign in, or ask an operator")
    owner_id = accounts.create_owner(body.name, email=body.email, password=body.password, role="admin")
    token_id, secret = accounts.issue_token(owner_id, "first token", "admin")
    owner = accounts.owner(owner_id)
    assert owner is not None
    return SetupDone(owner=OwnerOut(**owner), token=IssuedToken(id=token_id, token=secret, scope="admin"))


@router.post("/login", response_model=Session, responses={401: {"description": "wrong email or password"}})
def login(body: Login, request: Request, response: Response, accounts: AccountsDep) -> Session:
    done = accounts.login(body.email, body.password)
    if done is None:
        raise ApiError(401, "auth.invalid", "wrong email or password")
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


@router.post("/logout", status_code=204)
def logout(request: Request, response: Response, accounts: AccountsDep) -> Response:
    secret = request.cookies.get(COOKIE)
    if secret:
        accounts.logout(secret)
    response.delete_cookie(COOKIE, path="/")
    response.status_code = 204
    return response


@router.get("/me", response_model=Me)
def me(principal: Reader, accounts: AccountsDep) -> Me:
    owner = accounts.owner(principal.owner_id)
    assert owner is not None
    return Me(owner=OwnerOut(**owner), scope=principal.scope, actor=principal.actor)


@router.get("/tokens", response_model=list[TokenOut])
def tokens(principal: Reader, accounts: AccountsDep) -> list[TokenOut]:
    return [TokenOut(**t) for t in accounts.tokens(principal.owner_id)]


@router.post("/tokens", response_model=IssuedToken, status_code=201)
def new_token(body: NewToken, principal: Admin, accounts: AccountsDep) -> IssuedToken:
    """A new token of the caller's owner (the token itself is in the answer, once)."""
    token_id, secret = accounts.issue_token(principal.owner_id, body.name, body.scope)
    accounts.audit(principal, "token.create", token_id, {"name": body.name, "scope": body.scope})
    return IssuedToken(id=token_id, token=secret, scope=body.scope)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, principal: Admin, accounts: AccountsDep) -> Response:
    if not accounts.revoke(principal.owner_id, token_id):
        raise ApiError(404, "token.not_found", f"no active token {token_id!r} of yours")
    accounts.audit(principal, "token.revoke", token_id)
    return Response(status_code=204)


@router.get("/owners", response_model=list[OwnerOut])
def list_owners(_op: Operator, accounts: AccountsDep) -> list[OwnerOut]:
    return [OwnerOut(**o) for o in accounts.owners()]


@router.post("/owners", response_model=OwnerOut, status_code=201)
def create_owner(body: NewOwner, principal: Operator, accounts: AccountsDep) -> OwnerOut:
    owner_id = accounts.create_owner(body.name, email=body.email, password=body.password, role=body.role)
    accounts.audit(principal, "owner.create", owner_id, {"name": body.name, "role": body.role})
    owner = accounts.owner(owner_id)
    assert owner is not None
    return OwnerOut(**owner)


@router.get("/audit", response_model=list[AuditEntry])
def audit(
    principal: Reader, accounts: AccountsDep, limit: Limit = 50, before: str | None = Query(None, max_length=26)
) -> list[AuditEntry]:
    """The owner's changes, newest first (``before``: an entry id, for the next page)."""
    return [AuditEntry(**e) for e in accounts.audit_log(principal.owner_id, limit, before)]


__all__ = ["router", "who"]
