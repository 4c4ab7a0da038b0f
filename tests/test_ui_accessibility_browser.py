"""Every screen checked by axe-core (from the npm registry, package-lock.json) in Debian's chromium, at 1280 px and
at phone width: no WCAG 2 A/AA violation (labels, names, contrast, landmarks, ARIA), and nothing wider than the
phone's screen. Screenshots at phone width: artifacts/screenshots/phone-*.png."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from playwright.sync_api import Page

from api.settings import Settings
from api.ui_jules import UiJules
from engine.runtime.runtime import Runtime
from tests.conftest import ROOT
from tests.runtime_helpers import FRAGILE, GATED

pytest_plugins = ("tests.browser",)

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": 1280, "phone": 390}
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def violations(page: Page) -> list[dict[str, Any]]:
    if not AXE.is_file():
        message = f"{AXE} is missing: `bash scripts/build-ui` installs it (npm ci)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
        ".map(v => ({id: v.id, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))",
        RULES,
    )
    return found


def test_every_screen_passes_axe_at_desktop_and_phone_width(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    runtime: Runtime = ionflux_app.state.runtime
    ionflux_app.state.ui_jules = UiJules(runtime, ionflux_app.state.settings or Settings())
    for text in (GATED, FRAGILE):
        runtime.orchestrator.save_flow(text, "test.yaml")
    gated = runtime.orchestrator.start_run(runtime.orchestrator.latest_version("gated"), {})
    fragile = runtime.orchestrator.start_run(runtime.orchestrator.latest_version("fragile"), {})
    runtime.wait(gated, 30)
    runtime.wait(fragile, 30)
    url = serve(ionflux_app)
    page.goto(f"{url}/")
    builder = page.url
    screens = {
        "builder": builder,
        "flows": f"{url}/ui/flows",
        "flow": f"{url}/ui/flows/gated",
        "runs": f"{url}/ui/runs",
        "run-waiting": f"{url}/ui/runs/{gated}",
        "run-failed": f"{url}/ui/runs/{fragile}",
        "run-form": f"{url}/ui/runs/new?flow=gated",
        "catalog": f"{url}/ui/catalog",
        "catalog-type": f"{url}/ui/catalog/http.request",
        "settings": f"{url}/ui/settings",
    }
    problems: dict[str, Any] = {}
    for width_name, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 844})
        for name, address in screens.items():
            page.goto(address)
            page.wait_for_load_state("load")  # live pages keep an SSE stream open: never "networkidle"
            found = violations(page)
            if found:
                problems[f"{name} @ {width_name}"] = found
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            if width_name == "phone" and overflow > 1:
                problems[f"{name} @ phone: wider than the screen"] = f"{overflow} px"
            if width_name == "phone" and name in ("builder", "run-failed", "catalog", "settings"):
                screenshot(f"phone-{name}")
    # the Builder's editors, opened: the YAML tab and a node's panel
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(builder)
    page.get_by_role("tab", name="YAML").click()
    found = violations(page)
    if found:
        problems["builder yaml tab"] = found
    page.get_by_role("tab", name="Graph").click()
    page.locator("#node-manager").click()
    page.wait_for_selector("#node-panel form")
    found = violations(page)
    if found:
        problems["builder node panel"] = found
    assert not problems, json.dumps(problems, indent=2)


def test_the_builder_is_usable_from_the_keyboard(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page
) -> None:
    ionflux_app.state.ui_jules = UiJules(ionflux_app.state.runtime, ionflux_app.state.settings or Settings())
    url = serve(ionflux_app)
    page.goto(f"{url}/")
    reached: list[str] = []
    for _ in range(40):  # bounded: Tab through the page, noting what gets the focus
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "() => { const e = document.activeElement; return (e.getAttribute('aria-label') || e.id || "
                "e.textContent || '').trim(); }"
            )
        )
    text = " | ".join(reached)
    for wanted in ("Builder", "message", "Send", "Save and run", "tab-graph", "tab-yaml", "tab-cost"):
        assert wanted in reached, f"{wanted!r} is not reachable with Tab: {text}"
    assert any(r.startswith("manager approval") for r in reached), text  # the graph's nodes too
