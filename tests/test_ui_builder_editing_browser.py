"""The newcomer's first minute, in Debian's chromium against the real server (tests/browser.py), in the open local
demo (no sign-in): the server's address opens the Builder on the demo flow; a node's panel changes a field; the
YAML tab shows a located problem as it is typed, then applies the fixed text; Save and run, Start the run, and the
run waits for the manager's approval, which is given on the run's page. Screenshots: artifacts/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from playwright.sync_api import Page, expect

from api.settings import Settings
from api.ui_jules import UiJules

pytest_plugins = ("tests.browser",)

WAIT_MS = 15_000  # every wait is bounded


def test_from_the_first_screen_to_a_run_with_hand_edits(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    ionflux_app.state.ui_jules = UiJules(ionflux_app.state.runtime, ionflux_app.state.settings or Settings())
    url = serve(ionflux_app)

    # When the server's address is opened, then the Builder shows the demo flow's graph and a sentence to try
    page.goto(url)
    expect(page).to_have_url(re.compile(r"/ui/builder\?session=\w+"), timeout=WAIT_MS)
    expect(page.locator("#node-manager")).to_be_visible()
    expect(page.locator(".suggestion")).to_have_text("Run it every weekday at 9:00 Lisbon time")
    screenshot("builder-first-screen")

    # When a node is opened by keyboard, then its panel shows its fields; a changed timeout is applied
    page.locator("#node-manager").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile(r"Node manager"))).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_label("Timeout")).to_have_value("2d")
    page.get_by_label("Timeout").fill("1d")
    screenshot("builder-node-panel")
    page.get_by_role("button", name="Apply to the draft").click()
    expect(page.locator("#pane-message")).to_contain_text("Node manager changed: timeout", timeout=WAIT_MS)

    # When the YAML is edited into a mistake, then the problem is located as it is typed
    page.get_by_role("tab", name="YAML").click()
    editor = page.get_by_label(re.compile(r"The draft as YAML"))
    expect(editor).to_have_value(re.compile(r"timeout: 1d"))
    text = editor.input_value()
    editor.fill(text.replace("needs: [check]", "needs: [chek]"))
    expect(page.locator("#yaml-problems")).to_contain_text("1 problem", timeout=WAIT_MS)
    expect(page.locator("#yaml-problems .problem")).to_contain_text("chek")
    screenshot("builder-yaml-problem")
    page.locator("#yaml-problems .goto").first.click()
    expect(editor).to_be_focused()

    # When it is fixed and applied, then the draft is the user's text, drawn again
    editor.fill(text.replace("concurrency: 4", "concurrency: 2"))
    expect(page.locator("#yaml-problems")).to_contain_text("Valid FluxGraph", timeout=WAIT_MS)
    page.get_by_role("button", name="Apply to the draft").click()
    expect(page.locator("#pane-message")).to_contain_text("The draft is now your YAML.", timeout=WAIT_MS)

    # When it is saved and run with the form's defaults, then the run waits for the approval; approved, it succeeds
    page.get_by_role("button", name="Save and run").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/new\?flow=expense-approval"), timeout=WAIT_MS)
    page.get_by_role("button", name="Start the run").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/\w+$"), timeout=WAIT_MS)
    expect(page.locator("#run-status")).to_have_text("awaiting approval", timeout=WAIT_MS)
    page.get_by_role("button", name="Approve").click()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#node-book")).to_have_class(re.compile(r"\bstatus-succeeded\b"))
    screenshot("builder-demo-run")
