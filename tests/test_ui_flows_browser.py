"""The Flows screens in Debian's chromium against a real server (tests/browser.py): search the list as you type,
open a flow with a webhook trigger, activate it with the keyboard, see its URL and its copy button; at 1280 px and
at phone width. Screenshots: artifacts/screenshots/flows-*.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from playwright.sync_api import Page, expect

from api.ui_accounts import UiAccounts
from engine.runtime.runtime import Runtime
from tests.runtime_helpers import one_step_flow
from tests.test_ui_flows import DIGEST, DIGEST_V2

pytest_plugins = ("tests.browser",)


def test_search_open_and_activate_a_flow(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given the open local demo with three flows, one of them (two versions) with a webhook trigger
    runtime: Runtime = ionflux_app.state.runtime
    for text in (
        DIGEST,
        DIGEST_V2,
        one_step_flow("refunds", "Pays back returned orders."),
        one_step_flow("stock", "Counts."),
    ):
        runtime.orchestrator.save_flow(text, "test.yaml")
    url = serve(ionflux_app)

    # When the list opens, then every flow is there
    page.goto(f"{url}/ui/flows")
    rows = page.locator("#flow-list tbody tr")
    expect(rows).to_have_count(3)
    screenshot("flows-list")

    # When a word is typed in the labelled search box, then the list narrows as you type (no submit)
    page.get_by_label("Search flows").fill("digest")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Daily digest")

    # When the flow is opened, then its graph, versions and diff are there and its webhook has no URL yet
    page.get_by_role("link", name="Daily digest").click()
    expect(page.get_by_role("heading", name="Daily digest", level=1)).to_be_visible()
    expect(page.locator('svg[aria-roledescription="flow graph"] [data-node="tell"]')).to_be_visible()
    expect(page.locator("#diff .changes")).to_contain_text("node tell (data.set) added")
    expect(page.locator(".hook-url")).to_have_count(0)

    # When Activate is pressed from the keyboard, then the webhook's URL appears with a copy button
    activate = page.get_by_role("button", name="Activate", exact=True)
    activate.focus()
    page.keyboard.press("Enter")
    hook = page.get_by_label("Webhook URL")
    expect(hook).to_have_value(f"{url}/hooks/" + hook.input_value().rsplit("/", 1)[-1])
    assert "/hooks/" in hook.input_value()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    expect(page.get_by_role("button", name="Deactivate")).to_be_visible()
    assert {t.kind for t in runtime.triggers.armed("daily-digest")} == {"webhook", "cron", "event"}
    screenshot("flows-detail")

    # And at phone width the page still fits: no sideways scrolling of the page itself
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot("flows-phone")
    page.goto(f"{url}/ui/flows")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot("flows-list-phone")


def test_first_run_from_the_keyboard_signs_the_new_owner_in(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given a new installation (no owner yet)
    if getattr(ionflux_app.state, "ui_accounts", None) is None:  # until api.app wires api.ui_accounts itself
        ionflux_app.state.ui_accounts = UiAccounts(ionflux_app.state.accounts)
    url = serve(ionflux_app)

    # When the login page is opened, then it sends people to the first-run page, whose fields are labelled
    page.goto(f"{url}/ui/login")
    expect(page).to_have_url(f"{url}/ui/setup")
    expect(page.get_by_label("Your name")).to_be_focused()
    page.keyboard.type("Ana")
    page.keyboard.press("Tab")
    page.keyboard.type("ana@example.com")
    page.keyboard.press("Tab")
    page.keyboard.type("ana-password-1")
    screenshot("account-setup")
    page.keyboard.press("Enter")

    # Then Ana is signed in on the flows page, and can sign out
    expect(page).to_have_url(f"{url}/ui/flows")
    expect(page.locator(".who")).to_have_text("Ana")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{url}/ui/login")
    expect(page.get_by_label("Email")).to_be_visible()
    screenshot("account-login")
