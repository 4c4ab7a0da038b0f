"""Who is looking at a page, for the UI's routes.

The UI does not know how people sign in (that is the API's business: tokens, session cookies, the open local
demo); the composition root (``api.app``) puts a function on ``app.state.ui_visitor`` that reads a request and
answers a :class:`Visitor`, or None for a stranger. Pages call :func:`visitor`: a stranger is sent to the login
page (or the first-run page while the installation has no owner).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import HTTPException, Request


@dataclass(frozen=True)
class Visitor:
    owner_id: str
    name: str  # shown in the page header
    scope: str  # read | write | admin
    csrf: str | None  # a browser session's CSRF token: forms and htmx requests send it (X-CSRF-Token)
    demo: bool = False  # the open local demo (no sign-in): pages say so

    def may(self, scope: str) -> bool:
        order = ("read", "write", "admin")
        return order.index(self.scope) >= order.index(scope)


Finder = Callable[[Request], "Visitor | None"]


class SignInRequired(HTTPException):
    """Raised by :func:`visitor` for a stranger; the UI answers with a redirect to the login page."""

    def __init__(self, to: str) -> None:
        super().__init__(status_code=303, headers={"Location": to})


def known_visitor(request: Request) -> Visitor | None:
    """The visitor of a page, or None for a stranger."""
    find: Finder | None = getattr(request.app.state, "ui_visitor", None)
    return find(request) if find is not None else None


def visitor(request: Request) -> Visitor:
    """The visitor of a page (a FastAPI dependency); a stranger is redirected to sign in."""
    found = known_visitor(request)
    if found is None:
        raise SignInRequired(f"/ui/login?next={request.url.path}")
    return found


SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(request: Request) -> bool:
    """The request carries no ``Origin`` (not a cross-site browser request) or this server's own: the address it
    was asked at, or the public address it is reached at (``app.state.public_origin``: behind a TLS proxy the two
    differ)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    ours = {str(request.base_url).rstrip("/"), str(getattr(request.app.state, "public_origin", "")).rstrip("/")}
    return origin.rstrip("/") in ours


def requested_name(request: Request) -> str:
    """The host name the request was sent to (its ``Host`` header without the port), lower case."""
    host = request.headers.get("host", "")
    return (host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]).lower()


def named_for_us(request: Request) -> bool:
    """The name the request was sent to (``Host``) is one of this server's: an IP address, ``localhost``, or the
    host of its public address. A DNS-rebound page (evil.example made to resolve to this machine) sends its own
    name: what no credential guards (first-run setup) must not be done for it."""
    name = requested_name(request)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    public = urlsplit(str(getattr(request.app.state, "public_origin", ""))).hostname
    return bool(public) and name == public


class CsrfRefused(HTTPException):
    code = "auth.csrf"  # the error model's code and hint (api.v1.errors answers an HTTPException with them)
    hint = "reload the page and try again: a change made from a page must carry that page's CSRF token"

    def __init__(self) -> None:
        super().__init__(status_code=403, detail="this change needs the page's CSRF token, and did not carry it")


def check_csrf(request: Request, who: Visitor, form_token: str | None = None) -> None:
    """A change made with a browser session must carry the session's CSRF token (an ``X-CSRF-Token`` header, as
    the pages' htmx requests send, or a form's ``csrf`` field), so another site cannot post in the user's name."""
    if request.method in SAFE or who.csrf is None:
        return  # the open demo is guarded where it is granted (same origin + an htmx header), tokens need none
    sent = request.headers.get("x-csrf-token") or form_token or ""
    # compare_digest: how long a wrong guess takes to be refused says nothing about the right token
    if not hmac.compare_digest(sent.encode(), who.csrf.encode()):
        raise CsrfRefused


Auditor = Callable[[Visitor, str, str, "dict[str, object] | None"], None]


def audit(request: Request, who: Visitor, action: str, target: str, detail: dict[str, object] | None = None) -> None:
    """Record a change made from a page in the owner's audit log, as the API records its own (the composition
    root gives ``app.state.ui_audit``; without one, nothing is recorded)."""
    record: Auditor | None = getattr(request.app.state, "ui_audit", None)
    if record is not None:
        record(who, action, target, detail)
