"""Signing in and out: ``/ui/login``, the first-run page ``/ui/setup`` and ``POST /ui/logout``.

Plain HTML forms (they work without JavaScript). The session itself is the API's business: the pages call the
composition root's accounts (ui.accounts) and set the cookie it names, HttpOnly, SameSite=lax, Secure over https.
After signing in the visitor goes back to ``next``, which must be a path on this site: anything else (another
host, ``//host``, a scheme) is replaced by the flows page, so a crafted link cannot bounce a user elsewhere.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from engine.errors import IonfluxError
from ui.accounts import Accounts, accounts
from ui.rendering import page
from ui.visitor import Visitor, check_csrf, named_for_us, same_origin

router = APIRouter(prefix="/ui", include_in_schema=False)

HOME = "/ui/flows"
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD = 10  # as api.accounts asks

AccountsDep = Annotated[Accounts, Depends(accounts)]
SETUP_ELSEWHERE = (
    "Set up from this server's own page, at its own address (an IP address, localhost, or IONFLUX_PUBLIC_URL)."
)


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else the home page."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target) or "\\" in target:
        return HOME
    return target


def _signed_in(request: Request, cookies: Accounts, value: str, to: str) -> RedirectResponse:
    answer = RedirectResponse(to, status_code=303)
    answer.set_cookie(
        cookies.cookie,
        value,
        max_age=cookies.max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return answer


@router.get("/login", response_class=HTMLResponse, response_model=None)
def login_form(request: Request, known: AccountsDep, next: str | None = None) -> Response:
    if known.needs_setup():
        return RedirectResponse("/ui/setup", status_code=303)
    return page(request, "account_login.html", None, {"next": safe_next(next), "email": "", "error": None, "nav": ()})


@router.post("/login", response_class=HTMLResponse, response_model=None)
def login(
    request: Request,
    known: AccountsDep,
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME,
) -> Response:
    target = safe_next(next)
    if not same_origin(request):  # another site signing this browser in to an account of its choosing
        context = {"next": target, "email": email, "error": "Sign in from this site's own page.", "nav": ()}
        return page(request, "account_login.html", None, context, status=403)
    client = request.client.host if request.client else ""
    try:
        cookie = known.login(email.strip(), password, client) if email.strip() and password else None
    except IonfluxError as e:  # too many failed attempts lately
        context = {"next": target, "email": email, "error": f"{e.message}: {e.hint}.", "nav": ()}
        return page(request, "account_login.html", None, context, status=429)
    if cookie is None:
        error = "Wrong email or password." if email.strip() and password else "Enter your email and password."
        context = {"next": target, "email": email, "error": error, "nav": ()}
        return page(request, "account_login.html", None, context, status=401)
    return _signed_in(request, known, cookie, target)


@router.get("/setup", response_class=HTMLResponse, response_model=None)
def setup_form(request: Request, known: AccountsDep) -> Response:
    if not known.needs_setup():
        return RedirectResponse("/ui/login", status_code=303)
    return page(request, "account_setup.html", None, {"name": "", "email": "", "errors": {}, "nav": ()})


@router.post("/setup", response_class=HTMLResponse, response_model=None)
def setup(
    request: Request,
    known: AccountsDep,
    name: Annotated[str, Form(max_length=120)] = "",
    email: Annotated[str, Form(max_length=254)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not known.needs_setup():
        return RedirectResponse("/ui/login", status_code=303)
    name, email = name.strip(), email.strip()
    if not (same_origin(request) and named_for_us(request)):  # another site making itself the first operator
        context = {"name": name, "email": email, "errors": {"form": SETUP_ELSEWHERE}, "nav": ()}
        return page(request, "account_setup.html", None, context, status=403)
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Enter your name."
    if not EMAIL.match(email):
        errors["email"] = "Enter an email address, like ana@example.com."
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"Use {MIN_PASSWORD} characters or more."
    if not errors:
        try:
            return _signed_in(request, known, known.setup(name, email, password), HOME)
        except IonfluxError as e:
            errors["form"] = str(e)
    return page(
        request, "account_setup.html", None, {"name": name, "email": email, "errors": errors, "nav": ()}, status=422
    )


@router.post("/logout", response_model=None)
def logout(request: Request, known: AccountsDep, csrf: Annotated[str | None, Form()] = None) -> Response:
    """End the browser session (with its CSRF token, so another site cannot sign a user out)."""
    cookie = request.cookies.get(known.cookie)
    find = getattr(request.app.state, "ui_visitor", None)
    who: Visitor | None = find(request) if find is not None else None
    if cookie and who is not None and not who.demo:
        check_csrf(request, who, csrf)
        known.logout(cookie)
    answer = RedirectResponse("/ui/login", status_code=303)
    answer.delete_cookie(known.cookie, path="/")
    return answer
