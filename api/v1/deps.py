"""What every route needs: the runtime, the accounts, and who is asking with which scope.

A request authenticates with an API token (``Authorization: Bearer ifx_…``) or a browser session cookie
(``ionflux_session``). A cookie alone never authorises a change: an unsafe method must also echo the session's
CSRF token in the ``X-CSRF-Token`` header, so another site cannot post in the user's name. The API takes it from
that header only: a token in the query string would be written to access logs and proxies' logs, and the web UI
never needs it there (its forms post to ``/ui/…``, which reads the form's ``csrf`` field: ``ui.visitor``).

Lists are pages (:func:`page`): ``limit`` items from an opaque ``cursor``, and the ``next_cursor`` to go on.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from api.accounts import Accounts, Principal
from api.v1.errors import ApiError
from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER
from ui.visitor import requested_name, same_origin

COOKIE = "ionflux_session"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_bearer = HTTPBearer(auto_error=False, description="an API token: `Authorization: Bearer ifx_…`")
_cookie = APIKeyCookie(name=COOKIE, auto_error=False, description="a browser session (POST /api/v1/login)")


class RequestBody(BaseModel):
    """A request's JSON body: a field the route does not take is refused (422 at ``body.<field>``), not ignored, so
    a misspelt ``inputs`` for ``input`` says so instead of starting a run with no input."""

    model_config = ConfigDict(extra="forbid")


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
            check_csrf(request, found)
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


def check_csrf(request: Request, session: Principal) -> None:
    """Refuse (403 ``auth.csrf``) a change made with a browser session that does not echo its CSRF token."""
    sent, expected = request.headers.get("x-csrf-token", ""), session.csrf or ""
    # compare_digest: how long a wrong guess takes to be refused says nothing about the right token
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(
            403,
            "auth.csrf",
            "a change made with the session cookie needs the session's CSRF token",
            hint="send it in the X-CSRF-Token header (the `csrf` of the POST /api/v1/login answer)",
            location=[{"field": "header.X-CSRF-Token", "message": "missing, or not this session's"}],
        )


LOOPBACK = ("127.", "::1", "localhost")
DEMO_ACTOR = "local demo (no sign-in)"  # the audit log's name for the open demo's visitor


def on_this_machine(request: Request) -> bool:
    """Both ends of the request are this machine: the client's address, and the name its browser asked for (the
    ``Host`` header). The name matters because of DNS rebinding: a web page at ``evil.example`` can make its own name
    resolve to 127.0.0.1 and then talk to the local server from the visitor's browser, as a loopback client; but
    the browser still sends ``Host: evil.example``, and it also sends that as the page's ``Origin``, which would then
    look like the server's own."""
    client = request.client.host if request.client else ""
    return client.startswith(LOOPBACK) and _loopback_name(requested_name(request))


def _loopback_name(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _local_demo(request: Request) -> Principal | None:
    """The embedded demo's open door: a request from this machine, with no credentials, is the local owner.

    Only on loopback at both ends (``on_this_machine``; the server refuses to open it on another address), and
    never for a change another web page could make in the user's browser: an unsafe method must come from the same
    origin and carry a header a cross-site form cannot set (``HX-Request``, as the UI's htmx sends, or
    ``X-IONFLUX``). The visitor is the local owner, not an operator: it cannot list or make owners. It lasts until
    first run claims the local owner (then that workspace is a person's, who signs in)."""
    if not on_this_machine(request) or accounts(request).local_claimed():
        return None  # not this machine, or first run made the local owner someone's: they sign in
    scripted = request.headers.get("hx-request") or request.headers.get("x-ionflux")
    if request.method not in SAFE and not (same_origin(request) and scripted):
        raise ApiError(
            403,
            "auth.csrf",
            "the open local demo takes changes only from its own pages",
            hint="send the X-IONFLUX: 1 header (scripts), or use an API token",
        )
    return Principal(LOCAL_OWNER, "owner", "admin", DEMO_ACTOR)


def _from_token(request: Request, bearer: HTTPAuthorizationCredentials) -> Principal | None:
    found = accounts(request).by_token(bearer.credentials)
    if found is None:
        raise ApiError(
            401,
            "auth.invalid",
            "this API token is not valid (unknown or revoked)",
            hint="create a token (POST /api/v1/tokens, or `ionflux token create`) or sign in again",
        )
    return found


def scope(needed: str) -> Callable[..., Principal]:
    """A dependency: the caller, if their scope covers ``needed`` (read < write < admin)."""

    def check(principal: Annotated[Principal, Depends(who)]) -> Principal:
        if not principal.allows(needed):
            raise ApiError(
                403,
                "auth.forbidden",
                f"this needs the {needed} scope; the token has {principal.scope}",
                hint=f"ask with a token of the {needed} scope",
            )
        return principal

    return check


def operator(principal: Annotated[Principal, Depends(scope("admin"))]) -> Principal:
    if principal.role != "admin":
        raise ApiError(
            403,
            "auth.forbidden",
            "only an operator (an owner with the admin role) may do this",
            hint="ask an operator of this installation",
        )
    return principal


Reader = Annotated[Principal, Depends(scope("read"))]
Writer = Annotated[Principal, Depends(scope("write"))]
Admin = Annotated[Principal, Depends(scope("admin"))]
Operator = Annotated[Principal, Depends(operator)]
RuntimeDep = Annotated[Runtime, Depends(runtime)]
AccountsDep = Annotated[Accounts, Depends(accounts)]


Json = dict[str, Any]


# --- pages ----------------------------------------------------------------------------------------------------------

# pages hold 1 to 200 items (declared in the schema, so clients and schemathesis know the bounds)
Limit = Annotated[int, Query(ge=1, le=200, description="items per page")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page (omit it for the first)")
]
Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list; ``next_cursor`` goes on from its last item."""

    items: list[Item]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: this is the last")


def after(cursor: str | None, of: str) -> str | None:
    """The key a cursor of the list ``of`` carries (None: from the start), refused with 422 if this API did not
    give it for that list.

    A cursor is the list's name and the last key of the previous page (an id, a name), base64url-encoded: opaque
    so that clients pass it back as it is, so that a list can change what it keys on without breaking them, and
    so that a made-up cursor or one from another list is refused rather than quietly starting somewhere else."""
    if cursor is None:
        return None
    try:
        value = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        value = ""
    name, _, key = value.partition(":")
    if name != of or not key or not key.isprintable():
        raise ApiError(
            422,
            "request.invalid",
            f"query.cursor: not a cursor this API gave for the {of} list",
            hint="pass next_cursor from this list's previous page as it is, or leave cursor out for the first page",
            location=[{"field": "query.cursor", "message": "not a cursor this API gave"}],
        )
    return key


def page(found: Sequence[Item], limit: int, key: Callable[[Item], str], of: str) -> tuple[list[Item], str | None]:
    """The first ``limit`` of ``found`` (which was asked for ``limit + 1``, so that one more means there is a
    next page) and the cursor of the list ``of`` after the last of them, or None at the end."""
    items = list(found[:limit])
    if not (len(found) > limit and items):
        return items, None
    return items, base64.urlsafe_b64encode(f"{of}:{key(items[-1])}".encode()).decode().rstrip("=")
