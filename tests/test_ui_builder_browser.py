"""The Builder in Debian's chromium against the real server (tests/browser.py): a request typed to Jules, the
reply streaming in, the proposed graph, accept, Save and run, the run form, and the run's page showing its steps'
statuses. The request is one the offline planner turns into a flow that runs offline ("When I run it, set a
greeting to hello and log it": data.set then log). Screenshots: artifacts/screenshots/builder-*.png.

The visitor signs in (the open demo stays on): the run form is a plain HTML form, and the open demo grants a page
change only to htmx requests (api.ui_visitor), so in the demo that form's POST is sent to sign in. Signed in, the
Builder's htmx requests carry the session's CSRF token too, which this test then covers."""

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
PASSWORD = "ana-password-1"
REQUEST = "When I run it, set a greeting to hello and log it"


def test_a_request_becomes_a_flow_that_runs(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given the Builder open (a new session)
    ionflux_app.state.ui_jules = UiJules(ionflux_app.state.runtime, ionflux_app.state.settings or Settings())
    ionflux_app.state.accounts.create_owner("Ana", email="ana@example.com", password=PASSWORD, role="admin")
    url = serve(ionflux_app)
    page.goto(f"{url}/ui/login")
    page.get_by_label("Email").fill("ana@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible(timeout=WAIT_MS)
    page.goto(f"{url}/ui/builder")
    expect(page).to_have_url(re.compile(r"/ui/builder\?session=\w+"), timeout=WAIT_MS)
    expect(page.get_by_text("No draft yet")).to_be_visible()

    # When the suggestion is clicked, then it fills the message box
    suggestion = page.locator(".suggestion")
    suggestion.click()
    expect(page.get_by_label("Message to Jules")).to_have_value(re.compile(r"^Every weekday at 8:30 Lisbon"))
    screenshot("builder-empty")

    # When a request is typed and sent (by keyboard), then Jules's reply streams in and the proposal is drawn
    page.get_by_label("Message to Jules").fill(REQUEST)
    page.get_by_role("button", name="Send").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".msg-jules")).to_contain_text("Here is a first draft with 2 steps", timeout=WAIT_MS)
    expect(page.locator(".msg-jules")).to_contain_text("Accept or reject it.", timeout=WAIT_MS)
    expect(page.locator("#proposal .diff-add").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(".proposed-badge")).to_be_visible()
    expect(page.locator("#node-set")).to_be_visible()
    expect(page.locator("#node-log")).to_be_visible()
    expect(page.get_by_label("Message to Jules")).to_have_value("")
    screenshot("builder-proposal")

    # The YAML and Cost tabs show the proposed flow
    page.get_by_role("tab", name="YAML").click()
    expect(page.locator("#view-yaml")).to_contain_text("type: data.set")
    page.get_by_role("tab", name="Cost").click()
    expect(page.locator("#view-cost")).to_be_visible()
    page.get_by_role("tab", name="Graph").click()

    # When it is accepted, then the chat says so and the draft is drawn, with Save and run
    page.get_by_role("button", name="Accept").click()
    expect(page.locator(".msg-note")).to_contain_text("Accepted", timeout=WAIT_MS)
    expect(page.locator(".proposed-badge")).to_have_count(0)
    expect(page.locator("#node-log")).to_be_visible()
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot("builder-accepted-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # When it is saved and run, then the run form opens; started, the run's page shows the steps' statuses
    page.get_by_role("button", name="Save and run").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/new\?flow=when-i-run-it-set"), timeout=WAIT_MS)
    page.get_by_role("button", name="Start the run").click()
    expect(page).to_have_url(re.compile(r"/ui/runs/\w+$"), timeout=WAIT_MS)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#node-set")).to_have_class(re.compile(r"\bstatus-succeeded\b"))
    expect(page.locator("#node-log")).to_have_class(re.compile(r"\bstatus-succeeded\b"))
    screenshot("builder-run")
