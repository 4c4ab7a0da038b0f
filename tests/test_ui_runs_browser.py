"""The Runs screens in Debian's chromium against the real server (tests/browser.py): a run appears in the live list,
its page recolours the graph as steps change, an approval is approved from the page and the run finishes; a
failing step shows its error; a long run is cancelled from the page. Screenshots: artifacts/screenshots/runs-*.png.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from playwright.sync_api import Page, expect

from engine.runtime.runtime import Runtime
from tests.runtime_helpers import FRAGILE, flow

pytest_plugins = ("tests.browser",)

WAIT_MS = 15_000  # every wait is bounded
GATE = flow(
    """
    fluxgraph: 1
    id: pay-supplier
    name: Pay a supplier
    nodes:
      - {id: prepare, type: delay, with: {duration: 3s}}
      - id: gate
        type: approval
        needs: [prepare]
        with: {message: "Pay 120?"}
      - {id: pay, type: data.set, needs: [gate], with: {paid: true}}
    """
)
LONG = flow(
    """
    fluxgraph: 1
    id: long-wait
    nodes:
      - {id: wait, type: delay, with: {duration: 20s}}
      - {id: after, type: data.set, needs: [wait], with: {done: true}}
    """
)


def start(app: FastAPI, text: str) -> str:
    runtime: Runtime = app.state.runtime
    _, version = runtime.orchestrator.save_flow(text, "test.yaml")
    return runtime.orchestrator.start_run(version)


def test_a_run_is_watched_live_and_approved_from_its_page(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given the runs list open
    url = serve(ionflux_app)
    page.goto(f"{url}/ui/runs")
    expect(page.get_by_text("No runs yet.")).to_be_visible()

    # When a run starts, then it appears in the list live
    run_id = start(ionflux_app, GATE)
    row = page.locator(f"#run-{run_id}")
    expect(row).to_be_visible(timeout=WAIT_MS)
    screenshot("runs-list")

    # When its page is opened, then the graph shows the first step running, then the approval waiting
    row.get_by_role("link").click()
    expect(page.locator("#node-prepare")).to_have_class(re.compile(r"\bstatus-(running|waiting)\b"))
    expect(page.locator("#node-gate")).to_have_class(re.compile(r"\bstatus-pending\b"))
    expect(page.locator("#node-gate")).to_have_class(re.compile(r"\bstatus-waiting\b"), timeout=WAIT_MS)
    expect(page.locator("#node-prepare")).to_have_class(re.compile(r"\bstatus-succeeded\b"))
    expect(page.locator("#run-status")).to_have_text("awaiting approval")
    screenshot("runs-approval-waiting")

    # When it is approved from the page (by keyboard), then the run finishes and the stream closes
    page.get_by_label("Comment (optional)").fill("fine")
    page.get_by_role("button", name="Approve").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#action-result")).to_contain_text("Approved.", timeout=WAIT_MS)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#node-pay")).to_have_class(re.compile(r"\bstatus-succeeded\b"))
    expect(page.locator("#activity")).to_have_attribute("data-sse", "closed", timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    screenshot("runs-approved")


def test_a_failing_step_shows_its_error(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given a run whose step fails
    url = serve(ionflux_app)
    run_id = start(ionflux_app, FRAGILE)

    # When its page is open, then the failed step is coloured and its error is shown
    page.goto(f"{url}/ui/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("failed", timeout=WAIT_MS)
    expect(page.locator("#node-store")).to_have_class(re.compile(r"\bstatus-failed\b"))
    expect(page.locator("#step-store .step-error")).not_to_be_empty()

    # When its output is asked for, then the page says it has none
    page.get_by_role("button", name="Show the output of store").click()
    expect(page.locator("#step-payload")).to_contain_text("has no output", timeout=WAIT_MS)
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot("runs-failed-phone")


def test_a_long_run_is_cancelled_from_its_page(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given a long run, its page open
    url = serve(ionflux_app)
    run_id = start(ionflux_app, LONG)
    page.goto(f"{url}/ui/runs/{run_id}")
    expect(page.locator("#node-wait")).to_have_class(re.compile(r"\bstatus-(running|waiting)\b"), timeout=WAIT_MS)

    # When it is cancelled from the page, then it ends cancelled, and the stream closes
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-status")).to_have_text("cancelled", timeout=WAIT_MS)
    expect(page.locator("#activity")).to_have_attribute("data-sse", "closed", timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    screenshot("runs-cancelled")
