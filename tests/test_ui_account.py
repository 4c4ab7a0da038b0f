"""Signing in through the web UI: strangers are sent to the login page, the login form sets the session cookie
and goes back to a same-site ``next`` only, the first-run page creates the first owner once, and signing out
needs the page's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.v1.deps import COOKIE
from engine.store.tables import web_sessions
from tests.ui_helpers import PASSWORDS, Ui, ui
from ui.pages.account import safe_next


@pytest.fixture
def u(tmp_path: Path) -> Iterator[Ui]:
    with ui(tmp_path) as value:
        yield value


def test_a_stranger_is_sent_to_the_login_page_with_where_they_were_going(u: Ui) -> None:
    # Given no session and the open demo off, when a stranger opens the flows page
    answer = u.client.get("/ui/flows")

    # Then they are sent to sign in, and come back after
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/login?next=/ui/flows"
    form = u.client.get("/ui/login", params={"next": "/ui/flows"})
    assert form.status_code == 200
    assert '<label for="login-email">Email</label>' in form.text
    assert '<label for="login-password">Password</label>' in form.text
    assert 'name="next" value="/ui/flows"' in form.text


def test_signing_in_sets_the_session_cookie_and_goes_to_next(u: Ui) -> None:
    # When Ana signs in from a link to one of her pages
    answer = u.client.post(
        "/ui/login",
        data={"email": "ana@example.com", "password": PASSWORDS["ana@example.com"], "next": "/ui/flows?q=x"},
    )

    # Then she has a session cookie (HttpOnly, SameSite=lax, 14 days) and goes back to that page
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/flows?q=x"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=1209600" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; https sets it
    page = u.client.get("/ui/flows")
    assert page.status_code == 200 and "Ana" in page.text and "Sign out" in page.text


def test_a_wrong_password_is_said_inline_and_sets_nothing(u: Ui) -> None:
    answer = u.client.post("/ui/login", data={"email": "ana@example.com", "password": "not-her-password"})
    assert answer.status_code == 401
    assert 'role="alert"' in answer.text and "Wrong email or password." in answer.text
    assert 'value="ana@example.com"' in answer.text  # the email is kept, the password is not
    assert "set-cookie" not in answer.headers


def test_another_site_cannot_sign_a_browser_in_and_guessing_waits(u: Ui) -> None:
    ana = {"email": "ana@example.com", "password": PASSWORDS["ana@example.com"]}
    # Another site's form posting the right credentials (login CSRF: the victim would work in the attacker's account)
    foreign = u.client.post("/ui/login", data=ana, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "set-cookie" not in foreign.headers
    # Ten wrong passwords, then even the right one is asked to wait, on the page
    for _ in range(10):
        assert u.client.post("/ui/login", data={**ana, "password": "not-her-password"}).status_code == 401
    waiting = u.client.post("/ui/login", data=ana)
    assert waiting.status_code == 429 and "set-cookie" not in waiting.headers
    assert 'role="alert"' in waiting.text and "too many failed sign-in attempts" in waiting.text


def test_an_address_with_no_page_answers_a_page_that_says_where_to_go(u: Ui) -> None:
    for method in ("GET", "POST"):
        answer = u.client.request(method, "/ui/flowz")
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
        assert "Page not found" in answer.text and "<code>/ui/flowz</code>" in answer.text
        assert 'href="/ui/flows"' in answer.text
    assert u.client.get("/api/v1/flowz").json()["error"]["code"] == "route.not_found"  # the API's stays JSON


def test_an_oversized_form_is_refused_before_it_is_read(u: Ui) -> None:
    fields = {f"f{n}": "x" * (1024 * 1024) for n in range(3)}  # 3 MB of form fields, no sign-in needed
    answer = u.client.post("/ui/login", data=fields)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request.too_large"


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/x", "//evil.example/x", "/\\evil.example", "http:/ui/flows", "javascript:alert(1)", "ui/x"],
)
def test_a_foreign_next_is_refused(u: Ui, target: str) -> None:
    # When the login form is posted with a next that leaves the site, then the user lands on the flows page
    answer = u.client.post(
        "/ui/login", data={"email": "ana@example.com", "password": PASSWORDS["ana@example.com"], "next": target}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/flows"
    assert safe_next(target) == "/ui/flows"
    assert 'value="/ui/flows"' in u.client.get("/ui/login", params={"next": target}).text


def test_first_run_creates_the_first_owner_once(tmp_path: Path) -> None:
    with ui(tmp_path, owners=False) as u:
        u.client.base_url = "http://127.0.0.1:8080"  # first run: at the server's own name
        # Given a new installation, the login page sends people to the first-run page
        assert u.client.get("/ui/login").headers["location"] == "/ui/setup"
        assert u.client.get("/ui/setup").status_code == 200
        # Another site's form, or a page at another name, cannot make itself the operator
        ana = {"name": "Ana", "email": "ana@example.com", "password": "a-long-password"}
        foreign = u.client.post("/ui/setup", data=ana, headers={"Origin": "https://evil.example"})
        rebound = u.client.post("http://evil.example:8080/ui/setup", data=ana)
        assert foreign.status_code == rebound.status_code == 403 and u.accounts.needs_setup()

        # When the form is sent with a short password, then it says so next to the field
        short = u.client.post("/ui/setup", data={"name": "Ana", "email": "ana@example.com", "password": "short"})
        assert short.status_code == 422
        assert 'id="setup-password-error"' in short.text and u.accounts.needs_setup()

        # When it is filled in, then the owner exists (an operator), is signed in, and lands on the flows page
        done = u.client.post(
            "/ui/setup", data={"name": "Ana", "email": "ana@example.com", "password": "ana-password-1"}
        )
        assert done.status_code == 303 and done.headers["location"] == "/ui/flows"
        assert COOKIE in u.client.cookies
        assert not u.accounts.needs_setup()
        assert [o["role"] for o in u.accounts.owners() if o["email"] == "ana@example.com"] == ["admin"]

        # Then the first-run page is closed: a second setup is sent to the login page and creates nobody
        u.client.cookies.clear()
        again = u.client.post(
            "/ui/setup", data={"name": "Eve", "email": "eve@example.com", "password": "eve-password-1"}
        )
        assert again.status_code == 303 and again.headers["location"] == "/ui/login"
        assert u.client.get("/ui/setup").headers["location"] == "/ui/login"
        assert not [o for o in u.accounts.owners() if o["email"] == "eve@example.com"]


def test_signing_out_needs_the_csrf_token_and_ends_the_session(u: Ui) -> None:
    csrf = u.sign_in()
    cookie = u.client.cookies[COOKIE]

    # When another site posts to the logout URL without the token, then it is refused and the session lives
    refused = u.client.post("/ui/logout")
    assert refused.status_code == 403
    assert u.accounts.by_session(cookie) is not None

    # When the page's form posts it with the token, then the session is gone
    done = u.client.post("/ui/logout", data={"csrf": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/ui/login"
    assert u.accounts.by_session(cookie) is None
    assert u.client.get("/ui/flows").status_code == 303


def test_an_expired_session_is_forgotten_by_the_browser_and_the_database(u: Ui) -> None:
    u.sign_in()
    cookie = u.client.cookies[COOKIE]
    # Given the session expired
    with u.runtime.db.begin() as conn:
        conn.execute(web_sessions.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    # When a page is asked for, Then it sends to sign-in and clears the cookie
    answer = u.client.get("/ui/flows")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login")
    assert f'{COOKIE}=""' in answer.headers["set-cookie"] and "Max-Age=0" in answer.headers["set-cookie"]
    # And the next sign-in removes the expired session's row
    u.sign_in("rui@example.com")
    with u.runtime.db.connect() as conn:
        left = conn.execute(sa.select(web_sessions.c.digest)).scalars().all()
    assert len(left) == 1 and u.accounts.by_session(cookie) is None
