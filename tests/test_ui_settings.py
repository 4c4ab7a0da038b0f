"""The Settings screen without a browser: secrets (set, listed by name and time, deleted after a confirmation) with
the API's name rule, scopes and CSRF, each owner's own and their values never in a page; API tokens (made and shown
once, then only their name and prefix; revoked); the model aliases and where they come from; every change in the
audit log; the open demo."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from engine.steps.llm import DEFAULT_MODELS
from engine.store.tables import LOCAL_OWNER
from tests.runtime_helpers import running
from tests.ui_helpers import Ui, ui
from ui.visitor import Visitor

HTMX = {"HX-Request": "true"}
VALUE = "sk-live-0123456789abcdef-never-shown"


@pytest.fixture
def u(tmp_path: Path) -> Iterator[Ui]:
    with ui(tmp_path) as value:
        yield value


def owner_of(u: Ui, email: str = "ana@example.com") -> str:
    return str(next(o["id"] for o in u.accounts.owners() if o["email"] == email))


def actions(u: Ui, email: str = "ana@example.com") -> list[tuple[str, str, object]]:
    """The owner's audit log, oldest first, without the sign-ins: (action, target, detail)."""
    log = reversed(u.accounts.audit_log(owner_of(u, email)))
    return [(e["action"], e["target"], e["detail"]) for e in log if not e["action"].startswith("auth.")]


def unlabelled(page: str) -> list[str]:
    """The ids of visible inputs and selects with no ``<label for>``."""
    fields = re.findall(r'<(?:input|select)\b(?![^>]*type="hidden")[^>]*\bid="([^"]+)"', page)
    return [f for f in fields if f'<label for="{f}"' not in page]


def test_the_page_has_its_three_sections_with_labelled_fields(u: Ui) -> None:
    u.sign_in()
    page = u.client.get("/ui/settings")
    assert page.status_code == 200
    text = page.text
    assert 'id="secrets"' in text and 'id="tokens"' in text and 'id="models"' in text
    assert "No secrets yet." in text and "No API tokens yet." in text
    assert unlabelled(text) == [] and '<label for="secret-value">Value</label>' in text
    assert 'id="secret-value" name="value" type="password"' in text
    assert 'pattern="[A-Za-z_][A-Za-z0-9_]{0,63}"' in text  # the store's rule, checked before posting too
    assert '<a href="/ui/settings" aria-current="page">Settings</a>' in text
    # the model aliases: the built-in ones, Jules's (none: the offline planner) and how to change them
    for alias, route in DEFAULT_MODELS.items():
        assert f"<code>{alias}</code>" in text and f"<code>{route.model}</code>" in text
    assert text.count('<span class="muted">built-in default</span>') == len(DEFAULT_MODELS)
    assert "IONFLUX_LLM_MODELS" in text and "docs/running.md" in text


def test_a_secret_is_set_listed_replaced_and_deleted_by_name(u: Ui) -> None:
    csrf = u.sign_in()
    ana = owner_of(u)
    store = u.runtime.orchestrator.secrets

    # When Ana sets a secret from the form (htmx, with the page's CSRF token)
    done = u.client.post(
        "/ui/settings/secrets", data={"name": "shop_token", "value": VALUE}, headers={**HTMX, "X-CSRF-Token": csrf}
    )

    # Then the section comes back listing its name and times, never its value, which the store holds encrypted
    assert done.status_code == 200 and done.text.lstrip().startswith('<section id="secrets"')
    assert "<code>shop_token</code>" in done.text and "Secret shop_token saved." in done.text
    assert "{{ secrets.shop_token }}" in done.text
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>', done.text)
    assert VALUE not in done.text
    assert store.resolve(["shop_token"], ana) == {"shop_token": VALUE}

    # When she sets it again as a plain form post (the CSRF token in a field), then it is replaced
    again = u.client.post("/ui/settings/secrets", data={"name": "shop_token", "value": VALUE + "2", "csrf": csrf})
    assert again.status_code == 303 and again.headers["location"] == "/ui/settings#secrets"
    assert store.resolve(["shop_token"], ana) == {"shop_token": VALUE + "2"}

    # When she deletes it: without JavaScript a confirmation page asks first, then the post deletes it
    confirm = u.client.get("/ui/settings/secrets/shop_token/delete")
    assert confirm.status_code == 200 and "Delete the secret <code>shop_token</code>?" in confirm.text
    assert 'action="/ui/settings/secrets/shop_token/delete"' in confirm.text and f'value="{csrf}"' in confirm.text
    listed = u.client.get("/ui/settings").text
    assert 'hx-confirm="Delete the secret shop_token?' in listed  # htmx asks with a dialog
    gone = u.client.post("/ui/settings/secrets/shop_token/delete", headers={**HTMX, "X-CSRF-Token": csrf})
    assert gone.status_code == 200 and "Secret shop_token deleted." in gone.text
    assert store.names(ana) == [] and "No secrets yet." in gone.text
    twice = u.client.post("/ui/settings/secrets/shop_token/delete", headers={**HTMX, "X-CSRF-Token": csrf})
    assert twice.status_code == 404 and "You have no secret &#39;shop_token&#39;" in twice.text

    # (the confirmation page's plain form deletes too, then goes back to the list)
    u.client.post("/ui/settings/secrets", data={"name": "other", "value": VALUE, "csrf": csrf})
    plain = u.client.post("/ui/settings/secrets/other/delete", data={"csrf": csrf})
    assert plain.status_code == 303 and plain.headers["location"] == "/ui/settings#secrets"
    assert store.names(ana) == []

    # And each change is in her audit log, by name, with no value
    assert actions(u) == [
        ("secret.set", "shop_token", {"created": True}),
        ("secret.set", "shop_token", {"created": False}),
        ("secret.delete", "shop_token", None),
        ("secret.set", "other", {"created": True}),
        ("secret.delete", "other", None),
    ]
    assert VALUE not in str(u.accounts.audit_log(ana))


def test_changes_without_the_csrf_token_are_refused(u: Ui) -> None:
    csrf = u.sign_in()
    ana = owner_of(u)
    store = u.runtime.orchestrator.secrets
    store.set("kept", VALUE, ana)
    token_id, _ = u.accounts.issue_token(ana, "ci", "read")

    # When another site's form posts in Ana's name (her cookie, no token or a wrong one), then nothing changes
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        assert (
            u.client.post("/ui/settings/secrets", data={"name": "evil", "value": "x"}, headers=headers).status_code
            == 403
        )
        assert u.client.post("/ui/settings/secrets/kept/delete", headers=headers).status_code == 403
        assert u.client.post("/ui/settings/tokens", data={"name": "evil"}, headers=headers).status_code == 403
        assert u.client.post(f"/ui/settings/tokens/{token_id}/revoke", headers=headers).status_code == 403
    assert store.names(ana) == ["kept"]
    assert [(t["name"], t["revoked_at"]) for t in u.accounts.tokens(ana)] == [("ci", None)]
    assert actions(u) == []
    assert u.client.post("/ui/settings/secrets", data={"name": "ok", "value": "x", "csrf": csrf}).status_code == 303


def test_a_bad_name_or_value_is_located_and_says_how_to_fix_it(u: Ui) -> None:
    csrf = u.sign_in()
    post = {**HTMX, "X-CSRF-Token": csrf}

    # When the name breaks the store's rule, then the field says what is allowed, keeps the name, not the value
    bad = u.client.post("/ui/settings/secrets", data={"name": "x y", "value": VALUE}, headers=post)
    assert bad.status_code == 422
    assert (
        '<p id="secret-name-error" class="field-error" role="alert">Secret name &#39;x y&#39; is not allowed: '
        "use letters, digits and _, starting with a letter or _ (64 characters at most).</p>"
    ) in bad.text
    assert 'value="x y"' in bad.text and 'aria-invalid="true" autofocus' in bad.text
    assert 'aria-describedby="secret-name-hint secret-name-error"' in bad.text
    assert VALUE not in bad.text and "never sent back to the page: type it again" in bad.text

    # an empty value and one over the API's limit are refused the same way, on the value's field
    empty = u.client.post("/ui/settings/secrets", data={"name": "ok", "value": ""}, headers=post)
    assert empty.status_code == 422 and "The secret&#39;s value is empty: enter the value to store." in empty.text
    huge = u.client.post("/ui/settings/secrets", data={"name": "ok", "value": "x" * (64 * 1024 + 1)}, headers=post)
    assert huge.status_code == 422 and "a secret holds at most 65,536 characters" in huge.text
    assert 'id="secret-value-error" class="field-error" role="alert"' in huge.text
    assert u.runtime.orchestrator.secrets.names(owner_of(u)) == []

    # a plain form post gets the whole page back with the same error
    plain = u.client.post("/ui/settings/secrets", data={"name": "9lives", "value": VALUE, "csrf": csrf})
    assert plain.status_code == 422 and plain.text.startswith("<!doctype html>")
    assert "Secret name &#39;9lives&#39; is not allowed" in plain.text and VALUE not in plain.text


def test_each_owner_sees_and_changes_only_their_own_secrets(u: Ui) -> None:
    store = u.runtime.orchestrator.secrets
    rui = owner_of(u, "rui@example.com")
    store.set("ruis_key", VALUE, rui)
    csrf = u.sign_in()

    page = u.client.get("/ui/settings").text
    assert "ruis_key" not in page and "No secrets yet." in page
    refused = u.client.post("/ui/settings/secrets/ruis_key/delete", headers={**HTMX, "X-CSRF-Token": csrf})
    assert refused.status_code == 404
    assert u.client.get("/ui/settings/secrets/ruis_key/delete").status_code == 303  # no confirmation page either
    # Ana's secret of the same name is hers alone
    u.client.post("/ui/settings/secrets", data={"name": "ruis_key", "value": "anas", "csrf": csrf})
    assert store.resolve(["ruis_key"], rui) == {"ruis_key": VALUE}
    assert actions(u, "rui@example.com") == []


def test_a_secrets_value_is_in_no_page(u: Ui) -> None:
    csrf = u.sign_in()
    u.client.post("/ui/settings/secrets", data={"name": "shop_token", "value": VALUE, "csrf": csrf})
    for path in ("/ui/settings", "/ui/catalog", "/ui/catalog/http.request", "/ui/flows", "/ui/runs"):
        answer = u.client.get(path)
        assert answer.status_code == 200, path
        assert VALUE not in answer.text, path
    assert "shop_token" in u.client.get("/ui/settings").text


def test_a_token_is_shown_once_then_only_by_name_and_can_be_revoked(u: Ui) -> None:
    csrf = u.sign_in()
    post = {**HTMX, "X-CSRF-Token": csrf}

    # When Ana creates a write token
    made = u.client.post("/ui/settings/tokens", data={"name": "deploy script", "scope": "write"}, headers=post)

    # Then the answer (never cached) shows the token once, in a labelled field with a copy button
    assert made.status_code == 200 and made.text.lstrip().startswith('<section id="tokens"')
    assert made.headers["cache-control"] == "no-store"
    secret = re.search(r'<input id="new-token" [^>]*value="(ifx_[^"]+)"', made.text)
    assert secret is not None
    token = secret.group(1)
    assert '<label for="new-token">Your new token</label>' in made.text and ">Copy</button>" in made.text
    assert "it is shown only this once" in made.text
    # and it works against the API, as Ana, with the write scope
    me = u.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["scope"] == "write" and me.json()["owner"]["email"] == "ana@example.com"

    # When the page is opened again, then the token is listed by name, scope and prefix only
    page = u.client.get("/ui/settings").text
    assert token not in page
    assert '<th scope="row">deploy script</th>' in page and f"<code>{token[:10]}…</code>" in page
    assert '<td data-label="Scope">write</td>' in page and "active</span>" in page

    # When she revokes it (after the confirmation), then the API refuses it
    token_id = re.search(r'/ui/settings/tokens/(\w+)/revoke"', page)
    assert token_id is not None
    assert "Revoke the token deploy script?" in u.client.get(f"/ui/settings/tokens/{token_id.group(1)}/revoke").text
    revoked = u.client.post(f"/ui/settings/tokens/{token_id.group(1)}/revoke", headers=post)
    assert revoked.status_code == 200 and "Token deploy script revoked" in revoked.text
    assert "revoked</span>" in revoked.text and f"/tokens/{token_id.group(1)}/revoke" not in revoked.text
    assert u.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    again = u.client.post(f"/ui/settings/tokens/{token_id.group(1)}/revoke", headers=post)
    assert again.status_code == 404 and "no active token" in again.text

    # And both changes are in the audit log, the token's name and scope but never the token
    assert actions(u) == [
        ("token.create", token_id.group(1), {"name": "deploy script", "scope": "write"}),
        ("token.revoke", token_id.group(1), None),
    ]
    assert token not in str(u.accounts.audit_log(owner_of(u)))


def test_a_token_is_made_by_the_apis_rules(u: Ui) -> None:
    csrf = u.sign_in()
    post = {**HTMX, "X-CSRF-Token": csrf}

    nameless = u.client.post("/ui/settings/tokens", data={"name": "  ", "scope": "read"}, headers=post)
    assert nameless.status_code == 422 and "Give the token a name" in nameless.text
    assert 'id="token-name-error" class="field-error" role="alert"' in nameless.text
    long = u.client.post("/ui/settings/tokens", data={"name": "n" * 121, "scope": "read"}, headers=post)
    assert long.status_code == 422 and "too long: use 120 characters at most" in long.text
    assert f'value="{"n" * 121}"' in long.text  # kept, to shorten
    root = u.client.post("/ui/settings/tokens", data={"name": "x", "scope": "root"}, headers=post)
    assert root.status_code == 422 and "Choose the token&#39;s scope: read, write or admin." in root.text
    assert u.accounts.tokens(owner_of(u)) == []

    # an admin token is offered (the visitor has the admin scope, as a session does) and made
    assert '<option value="admin">admin</option>' in u.client.get("/ui/settings").text
    assert u.client.post("/ui/settings/tokens", data={"name": "ops", "scope": "admin"}, headers=post).status_code == 200
    assert [t["scope"] for t in u.accounts.tokens(owner_of(u))] == ["admin"]


def test_another_owners_token_cannot_be_revoked(u: Ui) -> None:
    rui = owner_of(u, "rui@example.com")
    token_id, _ = u.accounts.issue_token(rui, "ruis", "read")
    csrf = u.sign_in()
    assert "ruis" not in u.client.get("/ui/settings").text
    refused = u.client.post(f"/ui/settings/tokens/{token_id}/revoke", headers={**HTMX, "X-CSRF-Token": csrf})
    assert refused.status_code == 404
    assert u.client.get(f"/ui/settings/tokens/{token_id}/revoke").status_code == 303
    assert u.accounts.tokens(rui)[0]["revoked_at"] is None


@pytest.fixture
def scoped(tmp_path: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    with running("embedded", tmp_path, start=False) as runtime:
        app = create_app(runtime, settings=Settings(home=tmp_path, model=None))
        with TestClient(app, follow_redirects=False) as client:
            yield app, client


def test_the_scopes_are_the_apis(scoped: tuple[FastAPI, TestClient]) -> None:
    app, client = scoped
    store = app.state.runtime.orchestrator.secrets
    store.set("kept", VALUE, LOCAL_OWNER)

    # Given a read-only visitor: every change is refused, and the page's buttons say why
    app.state.ui_visitor = lambda request: Visitor(LOCAL_OWNER, "reader", "read", None)
    page = client.get("/ui/settings").text
    assert page.count('disabled title="needs the write scope"') == 1
    assert page.count('disabled title="needs the admin scope"') == 2  # delete, create token
    refused = client.post("/ui/settings/secrets", data={"name": "x", "value": "y"}, headers=HTMX)
    assert refused.status_code == 403 and "needs the write scope; yours is read" in refused.text
    assert client.post("/ui/settings/secrets/kept/delete", headers=HTMX).status_code == 403
    made = client.post("/ui/settings/tokens", data={"name": "x", "scope": "read"}, headers=HTMX)
    assert made.status_code == 403 and "needs the admin scope" in made.text

    # Given a write visitor: a secret may be set (as PUT /api/v1/secrets), not deleted (admin, as in the API)
    app.state.ui_visitor = lambda request: Visitor(LOCAL_OWNER, "writer", "write", None)
    assert client.post("/ui/settings/secrets", data={"name": "x", "value": "y"}, headers=HTMX).status_code == 200
    assert client.post("/ui/settings/secrets/kept/delete", headers=HTMX).status_code == 403
    assert store.names(LOCAL_OWNER) == ["kept", "x"]
    assert app.state.accounts.tokens(LOCAL_OWNER) == []


def test_the_model_aliases_say_where_they_come_from(tmp_path: Path) -> None:
    # Given aliases set by IONFLUX_LLM_MODELS over the defaults, and IONFLUX_MODEL naming one for Jules
    settings = Settings(
        home=tmp_path,
        model="local",
        llm_models={"local": {"model": "openai/smollm2", "api_base": "http://127.0.0.1:8088/v1", "api_key": "none"}},
    )
    with running("embedded", tmp_path, start=False, llm_models=settings.model_routes()) as runtime:
        app = create_app(runtime, settings=settings)
        app.state.ui_visitor = lambda request: Visitor(LOCAL_OWNER, "you", "admin", None)
        with TestClient(app) as client:
            page = client.get("/ui/settings").text
    models = page[page.index('id="models"') :]
    row = re.search(r'<th scope="row"><code>local</code>(.*?)</tr>', models, re.S)
    assert row is not None
    assert '<span class="badge on">Jules</span>' in row.group(1) and "<code>openai/smollm2</code>" in row.group(1)
    assert "<code>IONFLUX_LLM_MODELS</code>" in row.group(1)
    assert "Jules, the co-pilot, uses <code>local</code>" in models
    assert models.count('<span class="muted">built-in default</span>') == len(DEFAULT_MODELS)
    assert "127.0.0.1:8088" not in page and '"none"' not in page  # a route's server and key stay private


def test_the_open_demo_changes_only_through_its_own_pages(tmp_path: Path) -> None:
    with running("embedded", tmp_path, start=False) as runtime:
        app = create_app(runtime, settings=Settings(open_local=True, bind="127.0.0.1:8080", home=tmp_path))
        with TestClient(
            app, client=("127.0.0.1", 50000), base_url="http://127.0.0.1:8080", follow_redirects=False
        ) as client:
            page = client.get("/ui/settings")
            assert page.status_code == 200 and "Open demo: these are the local owner" in page.text
            # htmx's requests (the page's own) change things; a plain cross-site-style form post does not
            made = client.post("/ui/settings/secrets", data={"name": "demo_key", "value": VALUE}, headers=HTMX)
            assert made.status_code == 200 and "<code>demo_key</code>" in made.text
            plain = client.post("/ui/settings/secrets", data={"name": "other", "value": VALUE})
            assert plain.status_code == 303 and plain.headers["location"].startswith("/ui/login")
            issued = client.post("/ui/settings/tokens", data={"name": "demo", "scope": "read"}, headers=HTMX)
            assert issued.status_code == 200 and 'id="new-token"' in issued.text
            assert runtime.orchestrator.secrets.names(LOCAL_OWNER) == ["demo_key"]
            log = [(e["action"], e["actor"]) for e in app.state.accounts.audit_log(LOCAL_OWNER)]
            assert log == [("token.create", "local demo (no sign-in)"), ("secret.set", "local demo (no sign-in)")]
