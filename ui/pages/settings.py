"""The Settings screen, ``/ui/settings``: the visitor's secrets (names and times; set one, delete one), their API
tokens (list, create one shown once, revoke) and the installation's model aliases (read-only).

The same rules as the API, from the same code: a secret's name and value are checked by ``engine.runtime.secrets``
(``PUT /api/v1/secrets/{name}`` declares the same pattern and limit), setting one needs the write scope and
deleting one the admin scope; a token is checked by the API's own body model (through ``ui.settings``), and making
or revoking one needs the admin scope. Every change needs the page's CSRF token and is written to the audit log
with the API's action names (``secret.set``, ``secret.delete``, ``token.create``, ``token.revoke``). A secret's
value is write-only: no page ever carries it back; a new token is shown once, in the answer that made it.

Each form works as a plain HTML form (a redirect, or the whole page) and through htmx (its section alone); a
delete or revoke asks first (``hx-confirm``, or without JavaScript a confirmation page).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from engine.runtime import catalog
from engine.runtime import secrets as secret_rules
from engine.runtime.runtime import Runtime
from engine.runtime.secrets import SecretError
from ui.rendering import page, templates
from ui.settings import SCOPES, Issued, OwnerSettings, Refused, owner_settings
from ui.visitor import Visitor, audit, check_csrf, visitor

router = APIRouter(prefix="/ui/settings", include_in_schema=False)

Who = Annotated[Visitor, Depends(visitor)]
Backend = Annotated[OwnerSettings, Depends(owner_settings)]
Csrf = Annotated[str | None, Form()]
NO_STORE = {"Cache-Control": "no-store"}  # a page holding a new token stays out of every cache
DOCS = "docs/running.md"  # the settings table (IONFLUX_LLM_MODELS, IONFLUX_MODEL, IONFLUX_LLM_API_BASE)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


templates.env.filters["settings_when"] = _when
templates.env.filters["settings_iso"] = _iso


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- what the sections show ---------------------------------------------------------------------------------


def _secrets(request: Request, who: Visitor, **extra: Any) -> dict[str, Any]:
    listing = _runtime(request).orchestrator.secrets.listing(who.owner_id)
    return {
        "secrets": listing,
        "name_pattern": secret_rules.NAME_PATTERN[1:-1],  # HTML's pattern= anchors it itself
        "name_rule": secret_rules.NAME_RULE,
        "max_value": secret_rules.MAX_VALUE,
        "secret_errors": {},
        "secret_name": "",
        "secret_notice": "",
        **extra,
    }


def _tokens(who: Visitor, backend: OwnerSettings, **extra: Any) -> dict[str, Any]:
    return {
        "tokens": backend.tokens(who.owner_id),
        "scopes": SCOPES,
        "issued": None,
        "token_errors": {},
        "token_name": "",
        "token_scope": "read",
        "token_notice": "",
        **extra,
    }


def _models(request: Request, backend: OwnerSettings) -> dict[str, Any]:
    return {"agents": catalog.agents(_runtime(request).config.llm_models), "jules": backend.jules_model(), "docs": DOCS}


def _whole(request: Request, who: Visitor, backend: OwnerSettings, **extra: Any) -> dict[str, Any]:
    return {**_secrets(request, who), **_tokens(who, backend), **_models(request, backend), **extra}


def _answer(request: Request, who: Visitor, fragment: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """htmx gets the section; a plain form post gets the whole page with the section's state in it."""
    if _htmx(request):
        return page(request, fragment, who, context, status=status)
    backend: OwnerSettings = owner_settings(request)
    return page(request, "settings.html", who, {**_whole(request, who, backend), **context}, status=status)


# --- the page -----------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def settings_page(request: Request, who: Who, backend: Backend) -> HTMLResponse:
    """Secrets, API tokens and model aliases."""
    return page(request, "settings.html", who, _whole(request, who, backend))


# --- secrets ------------------------------------------------------------------------------------------------


@router.post("/secrets", response_class=HTMLResponse, response_model=None)
def set_secret(
    request: Request,
    who: Who,
    csrf: Csrf = None,
    name: Annotated[str, Form()] = "",  # checked below, to say what is wrong in the page (the body limit caps it)
    value: Annotated[str, Form()] = "",
) -> Response:
    """Create or replace a secret; the answer names it, never its value."""
    check_csrf(request, who, csrf)
    name = name.strip()
    if not who.may("write"):
        errors = {"form": f"Setting a secret needs the write scope; yours is {who.scope}."}
        return _answer(request, who, "settings_secrets.html", _secrets(request, who, secret_errors=errors), 403)
    errors = {}
    for field, check, given in (("name", secret_rules.check_name, name), ("value", secret_rules.check_value, value)):
        try:
            check(given)
        except SecretError as e:
            errors[field] = f"{_sentence(e.message)}: {e.hint}."
    if errors:
        if value:  # the form comes back without it
            errors["again"] = "The value is never sent back to the page: type it again."
        context = _secrets(request, who, secret_errors=errors, secret_name=name)
        return _answer(request, who, "settings_secrets.html", context, 422)
    store = _runtime(request).orchestrator.secrets
    existed = name in store.names(who.owner_id)
    store.set(name, value, who.owner_id)
    audit(request, who, "secret.set", name, {"created": not existed})
    if not _htmx(request):
        return RedirectResponse("/ui/settings#secrets", status_code=303)
    notice = f"Secret {name} {'replaced' if existed else 'saved'}. Use it in a flow as {{{{ secrets.{name} }}}}."
    return page(request, "settings_secrets.html", who, _secrets(request, who, secret_notice=notice))


@router.get("/secrets/{name}/delete", response_class=HTMLResponse, response_model=None)
def confirm_delete_secret(request: Request, name: str, who: Who) -> Response:
    """Without JavaScript, Delete opens this page: the same question htmx asks with ``hx-confirm``."""
    if name not in _runtime(request).orchestrator.secrets.names(who.owner_id):
        return RedirectResponse("/ui/settings#secrets", status_code=303)
    context = {"kind": "secret", "name": name, "action": f"/ui/settings/secrets/{name}/delete", "back": "secrets"}
    return page(request, "settings_confirm.html", who, context)


@router.post("/secrets/{name}/delete", response_class=HTMLResponse, response_model=None)
def delete_secret(request: Request, name: str, who: Who, csrf: Csrf = None) -> Response:
    """Delete a secret (a step that reads it then fails, saying which secret is not set)."""
    check_csrf(request, who, csrf)
    if not who.may("admin"):
        errors = {"form": "Deleting a secret needs the admin scope, as in the API."}
        return _answer(request, who, "settings_secrets.html", _secrets(request, who, secret_errors=errors), 403)
    if not _runtime(request).orchestrator.secrets.delete(name, who.owner_id):
        errors = {"form": f"You have no secret {name!r}: it may have been deleted already."}
        return _answer(request, who, "settings_secrets.html", _secrets(request, who, secret_errors=errors), 404)
    audit(request, who, "secret.delete", name)
    if not _htmx(request):
        return RedirectResponse("/ui/settings#secrets", status_code=303)
    notice = f"Secret {name} deleted. Steps that read it now fail until it is set again."
    return page(request, "settings_secrets.html", who, _secrets(request, who, secret_notice=notice))


# --- API tokens ---------------------------------------------------------------------------------------------


@router.post("/tokens", response_class=HTMLResponse, response_model=None)
def create_token(
    request: Request,
    who: Who,
    backend: Backend,
    csrf: Csrf = None,
    name: Annotated[str, Form()] = "",  # checked by the API's rules (ui.settings.Refused says what is wrong)
    scope: Annotated[str, Form()] = "read",
) -> Response:
    """Make a token; the answer shows it once (and is never cached), the list shows only its name after that."""
    check_csrf(request, who, csrf)
    name = name.strip()
    if not who.may("admin"):
        errors = {"form": "Creating a token needs the admin scope, as in the API."}
        return _answer(request, who, "settings_tokens.html", _tokens(who, backend, token_errors=errors), 403)
    try:
        issued: Issued = backend.issue_token(who.owner_id, name, scope)
    except Refused as e:
        context = _tokens(who, backend, token_errors={e.field: e.message}, token_name=name, token_scope=scope)
        return _answer(request, who, "settings_tokens.html", context, 422)
    audit(request, who, "token.create", issued.token.id, {"name": issued.token.name, "scope": issued.token.scope})
    answer = _answer(request, who, "settings_tokens.html", _tokens(who, backend, issued=issued))
    answer.headers.update(NO_STORE)
    return answer


@router.get("/tokens/{token_id}/revoke", response_class=HTMLResponse, response_model=None)
def confirm_revoke_token(request: Request, token_id: str, who: Who, backend: Backend) -> Response:
    """Without JavaScript, Revoke opens this page: the same question htmx asks with ``hx-confirm``."""
    found = next((t for t in backend.tokens(who.owner_id) if t.id == token_id and t.active), None)
    if found is None:
        return RedirectResponse("/ui/settings#tokens", status_code=303)
    context = {
        "kind": "token",
        "name": found.name,
        "action": f"/ui/settings/tokens/{token_id}/revoke",
        "back": "tokens",
    }
    return page(request, "settings_confirm.html", who, context)


@router.post("/tokens/{token_id}/revoke", response_class=HTMLResponse, response_model=None)
def revoke_token(request: Request, token_id: str, who: Who, backend: Backend, csrf: Csrf = None) -> Response:
    """Revoke a token: programs using it are refused from the next request on."""
    check_csrf(request, who, csrf)
    if not who.may("admin"):
        errors = {"form": "Revoking a token needs the admin scope, as in the API."}
        return _answer(request, who, "settings_tokens.html", _tokens(who, backend, token_errors=errors), 403)
    found = next((t for t in backend.tokens(who.owner_id) if t.id == token_id), None)
    if found is None or not backend.revoke_token(who.owner_id, token_id):
        errors = {"form": "You have no active token with this id: it may have been revoked already."}
        return _answer(request, who, "settings_tokens.html", _tokens(who, backend, token_errors=errors), 404)
    audit(request, who, "token.revoke", token_id)
    if not _htmx(request):
        return RedirectResponse("/ui/settings#tokens", status_code=303)
    notice = f"Token {found.name} revoked: programs using it are refused from now on."
    return page(request, "settings_tokens.html", who, _tokens(who, backend, token_notice=notice))
