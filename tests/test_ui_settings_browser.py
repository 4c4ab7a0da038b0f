"""The Settings and Catalog screens in Debian's chromium against a real server (tests/browser.py): set a secret from
the keyboard and see its name listed (never its value), delete it after the confirmation, create a token and copy
it, search the catalog and open a type and copy its example; at 1280 px and at phone width.
Screenshots: artifacts/screenshots/settings-*.png and catalog-*.png."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from playwright.sync_api import Dialog, Page, ViewportSize, expect

from engine.runtime.runtime import Runtime
from engine.store.tables import LOCAL_OWNER

pytest_plugins = ("tests.browser",)

VALUE = "sk-browser-0123456789-never-shown"
PHONE: ViewportSize = {"width": 390, "height": 844}


def fits(page: Page) -> bool:
    """No sideways scrolling of the page itself."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_set_a_secret_and_create_and_copy_a_token(
    ionflux_app: FastAPI, server: str, page: Page, screenshot: Callable[[str], Path]
) -> None:
    runtime: Runtime = ionflux_app.state.runtime
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)

    # When a secret is typed into the labelled form and sent with Enter
    page.goto(f"{server}/ui/settings")
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()
    page.get_by_label("Name", exact=True).first.fill("shop_token")
    value = page.locator("#secret-value")
    value.fill(VALUE)
    value.press("Enter")

    # Then its name is listed, the value is nowhere in the page, and the store has it
    row = page.locator("#secrets tbody tr")
    expect(row).to_have_count(1)
    expect(row.first).to_contain_text("shop_token")
    expect(page.locator("#secrets .notice")).to_contain_text("Secret shop_token saved.")
    assert VALUE not in page.content()
    assert runtime.orchestrator.secrets.resolve(["shop_token"], LOCAL_OWNER) == {"shop_token": VALUE}
    screenshot("settings-secrets")

    # When a write token is created, then it is shown once with a copy button that copies it
    page.locator("#token-name").fill("deploy script")
    page.get_by_label("Scope").select_option("write")
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_label("Your new token")
    expect(shown).to_be_visible()
    token = shown.input_value()
    assert token.startswith("ifx_")
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token
    screenshot("settings-token")

    # When the page is opened again, then the token is listed by name only, and revocable
    page.reload()
    expect(page.locator("#tokens tbody tr").first).to_contain_text("deploy script")
    assert token not in page.content()
    expect(page.get_by_role("button", name="Revoke token deploy script")).to_be_visible()

    # When the secret is deleted, the dialog asks first; accepted, the row goes
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_role("button", name="Delete secret shop_token").click()
    expect(page.locator("#secrets .notice")).to_contain_text("Secret shop_token deleted.")
    expect(page.locator("#secrets tbody tr")).to_have_count(0)
    assert asked and asked[0].startswith("Delete the secret shop_token?")

    # And at phone width the page fits
    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.get_by_role("button", name="Create token")).to_be_visible()
    assert fits(page)
    screenshot("settings-phone")


def test_search_the_catalog_and_open_a_type(server: str, page: Page, screenshot: Callable[[str], Path]) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)

    # When the catalog opens, then the families are there; typing narrows the list as you type
    page.goto(f"{server}/ui/catalog")
    expect(page.get_by_role("heading", name="Catalog", level=1)).to_be_visible()
    cards = page.locator("#type-list .type-card")
    assert cards.count() > 10
    screenshot("catalog-list")
    page.get_by_label("Search node types").fill("slack")
    expect(cards).to_have_count(1)

    # When the type is opened, then its fields and its example are there, and the example copies
    page.get_by_role("link", name="slack.post").click()
    expect(page.get_by_role("heading", name="slack.post", level=1)).to_be_visible()
    expect(page.locator("#with table.schema")).to_contain_text("webhook_url")
    example = page.locator("#example-yaml")
    expect(example).to_contain_text("type: slack.post")
    copy = page.get_by_role("button", name="Copy the example")
    copy.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == example.inner_text()
    screenshot("catalog-type")

    # And at phone width both pages fit
    page.set_viewport_size(PHONE)
    page.reload()
    assert fits(page)
    screenshot("catalog-type-phone")
    page.goto(f"{server}/ui/catalog")
    assert fits(page)
    screenshot("catalog-list-phone")
