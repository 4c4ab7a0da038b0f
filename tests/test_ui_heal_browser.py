""" "Ask Jules to fix" in Debian's chromium against the real server (tests/browser.py): a run fails on a typo in an
expression, its page asks Jules (from the keyboard), the diagnosis, the coloured diff and "verified" appear, Apply &
resume resumes it and the page shows it succeed live; at phone width the healing stays readable.
Screenshots: artifacts/screenshots/heal-*.png."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI
from playwright.sync_api import Page, expect

from engine.runtime.runtime import Runtime
from tests.runtime_helpers import flow

pytest_plugins = ("tests.browser",)

WAIT_MS = 15_000  # every wait is bounded
TYPO = flow(
    """
    fluxgraph: 1
    id: welcome-text
    name: Welcome text
    nodes:
      - {id: prepare, type: data.set, with: {greeting: Welcome}}
      - id: text
        type: text.template
        needs: [prepare]
        with: {template: "{{ nodes.prepare.output.greeting }} {{ inputs.name }} <{{ inputs.emial }}>"}
    """
)


def failed_run(app: FastAPI) -> str:
    runtime: Runtime = app.state.runtime
    _, version = runtime.orchestrator.save_flow(TYPO, "test.yaml")
    run_id = runtime.orchestrator.start_run(version, {"email": "ana@example.com", "name": "Ana"})
    assert str(runtime.wait(run_id, 30)) == "failed"
    return run_id


def test_a_failed_run_is_healed_and_resumes_live(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given a failed run's page, its stream ended
    url = serve(ionflux_app)
    run_id = failed_run(ionflux_app)
    page.goto(f"{url}/ui/runs/{run_id}")
    expect(page.locator("#run-status")).to_have_text("failed")
    expect(page.locator("#activity")).to_have_attribute("data-sse", "closed", timeout=WAIT_MS)

    # When Jules is asked to fix it, from the keyboard
    page.get_by_role("button", name="Ask Jules to fix").focus()
    page.keyboard.press("Enter")

    # Then the diagnosis, the fix as a coloured diff, and the proof "verified" are shown, the heading focused
    heal = page.locator("#heal")
    expect(heal.get_by_role("heading", name="Jules's diagnosis")).to_be_focused(timeout=WAIT_MS)
    expect(page.locator("#heal-cause")).to_have_text("undefined_name")
    expect(page.locator("#heal-fix")).to_have_text("read inputs.email instead of inputs.emial")
    expect(heal.locator(".diff .diff-add")).to_contain_text("inputs.email")
    expect(heal.locator(".diff .diff-del")).to_contain_text("inputs.emial")
    expect(page.locator("#heal-proof")).to_contain_text("Verified on the recorded input.")
    expect(page.locator("#heal-proof")).to_have_class(re.compile(r"\bproof-verified\b"))
    screenshot("heal-diagnosis")

    # When the fix is applied
    page.get_by_role("button", name="Apply & resume").click()

    # Then the run resumes from the failed step and the page shows it succeed live, the button gone
    expect(page.locator("#heal-result")).to_contain_text("Resumed from text on the fixed version", timeout=WAIT_MS)
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#node-text")).to_have_class(re.compile(r"\bstatus-succeeded\b"))
    expect(page.locator("#activity")).to_contain_text("run succeeded", timeout=WAIT_MS)
    expect(page.locator("#run-follow")).to_have_attribute("data-sse", "closed", timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Ask Jules to fix")).to_have_count(0)
    expect(page.locator("#step-prepare")).to_contain_text("succeeded")
    screenshot("heal-resumed")


def test_the_healing_is_readable_at_phone_width(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given a failed run's page on a phone
    url = serve(ionflux_app)
    run_id = failed_run(ionflux_app)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{url}/ui/runs/{run_id}")

    # When Jules is asked to fix it, then the healing fits the screen: no sideways scrolling but the diff's own
    page.get_by_role("button", name="Ask Jules to fix").click()
    expect(page.locator("#heal-proof")).to_contain_text("Verified", timeout=WAIT_MS)
    apply = page.get_by_role("button", name="Apply & resume")
    expect(apply).to_be_visible()
    box = apply.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width}px)"
    screenshot("heal-phone")
