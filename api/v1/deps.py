"""What every route needs: the runtime, the accounts, and who is asking with which scope.

A request authenticates with an API token (``Authorization: Bearer ifx_…``) or a browser session cookie
(``ionflux_session``). A cookie alone never authorises a change: an unsafe method must also echo the session's
CSRF token in ``X-CSRF-Token`` (or a form's ``csrf`` field), so another site cannot post in the user's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from api.accounts import Accounts, Principal
from api.v1.errors import ApiError
from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER

COOKIE = "ionflux_session"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer ifx_…`")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="a browser session (POST /api/v1/login)")


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def accounts(request: Request) -> Accounts:
    return request.app.state.accounts  # type: ignore[no-any-return]


def who(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    found = _from_token(request, bearer) if bearer is not None else None
    if found is None and cookie:
        found = accounts(request).by_session(cookie)
        if found is not None and request.method not in SAFE:
            sent = request.headers.get("x-csrf-token") or request.query_params.get("csrf")
            if sent != found.csrf:
                raise ApiError(403, "auth.csrf", "this change needs the session's CSRF token", hint="send X-CSRF-Token")
    if found is None and getattr(request.app.state, "open_local", False):
        found = _local_demo(request)
    if found is None:
        raise ApiError(
            401,
            "auth.required",
            "sign in, or send an API token",
            hint="Authorization: Bearer ifx_… (create one with POST /api/v1/tokens, or the first with /api/v1/setup)",
        )
    return found


LOOPBACK = ("127.", "::1", "localhost")


def _local_demo(request: Request) -> Principal | None:
    """The embedded demo's open door: a request from this machine, with no credentials, is the local owner.

    Only from loopback (the server refuses to open it on another address), and never for a change another web
    page could make in the user's browser: an unsafe method must come from the same origin and carry a header a
    cross-site form cannot set (``HX-Request``, as the UI's htmx sends, or ``X-IONFLUX``)."""
    host = request.client.host if request.client else ""
    if not host.startswith(LOOPBACK):
        return None
    if request.method not in SAFE:
        origin = request.headers.get("origin")
        same = origin is None or origin.rstrip("/") == str(request.base_url).rstrip("/")
        if not same or not (request.headers.get("hx-request") or request.headers.get("x-ionflux")):
            raise ApiError(
                403,
                "auth.csrf",
                "the open local demo takes changes only from its own pages",
                hint="send the X-IONFLUX: 1 header (scripts), or use an API token",
            )
    return Principal(LOCAL_OWNER, "admin", "admin", "local demo (no sign-in)")


def _from_token(request: Request, bearer: HTTPAuthorizationCredentials) -> Principal | None:
    found = accounts(request).by_token(bearer.credentials)
    if found is None:
        raise ApiError(401, "auth.invalid", "this API token is not valid (unknown or revoked)")
    return found


def scope(needed: str) -> Callable[..., Principal]:
    """A dependency: the caller, if their scope covers ``needed`` (read < write < admin)."""

    def check(principal: Annotated[Principal, Depends(who)]) -> Principal:
        if not principal.allows(needed):
            raise ApiError(403, "auth.forbidden", f"this needs the {needed} scope; the token has {principal.scope}")
        return principal

    return check


def operator(principal: Annotated[Principal, Depends(scope("admin"))]) -> Principal:
    if principal.role != "admin":
        raise ApiError(403, "auth.forbidden", "only an operator (an owner with the admin role) may do this")
    return principal


Reader = Annotated[Principal, Depends(scope("read"))]
Writer = Annotated[Principal, Depends(scope("write"))]
Admin = Annotated[Principal, Depends(scope("admin"))]
Operator = Annotated[Principal, Depends(operator)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
AccountsDep = Annotated[Accounts, Depends(accounts)]


# pages hold 1 to 200 items (declared in the schema, so clients and schemathesis know the bounds)
Limit = Annotated[int, Query(ge=1, le=200, description="items per page")]
Json = dict[str, Any]
