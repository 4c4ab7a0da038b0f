"""The UI stack end to end: templates, the vendored htmx served from /static, an htmx swap and a Server-Sent
Events stream, in Debian's chromium against a real server on loopback (tests/browser.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi import FastAPI
from playwright.sync_api import Page, expect

from ui import web

pytest_plugins = ("tests.browser",)


def test_the_smoke_page_swaps_server_html_and_shows_streamed_events(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str], page: Page, screenshot: Callable[[str], Path]
) -> None:
    # Given the real app with the UI mounted (twice is harmless: create_app will do it too), on loopback
    web.mount(ionflux_app)
    web.mount(ionflux_app)
    url = serve(ionflux_app)

    # When the smoke page loads
    page.goto(f"{url}/ui/smoke")

    # Then the stream's events arrive in order, and its "done" event closes it (no reconnect, no repeats)
    events = page.locator("#events li")
    expect(events).to_have_text([f"event {n} of {web.SMOKE_EVENTS}" for n in range(1, web.SMOKE_EVENTS + 1)])
    expect(page.locator("#events")).to_have_attribute("data-sse", "closed")
    expect(events).to_have_count(web.SMOKE_EVENTS)

    # When the button is clicked, then the server's HTML is swapped in, asked for by htmx
    page.get_by_role("button", name="Ask the server").click()
    expect(page.locator("#swap-here #swapped")).to_have_text("Swapped in by the server, asked by htmx.")
    assert screenshot("ui-smoke").stat().st_size > 0


def test_the_event_stream_resumes_after_the_last_event_id(
    ionflux_app: FastAPI, serve: Callable[[FastAPI], str]
) -> None:
    # Given the UI served
    web.mount(ionflux_app)
    url = serve(ionflux_app)

    # When a client that saw event 2 reconnects
    with httpx.Client(timeout=10) as client:
        answer = client.get(f"{url}/ui/smoke/events", headers={"Last-Event-ID": "2"})

    # Then it gets only what it missed, then the end
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "id: 3" in answer.text
    assert "event 2 of" not in answer.text
    assert answer.text.replace("\r\n", "\n").rstrip().endswith("event: done\ndata:")


def test_the_vendored_htmx_is_served(ionflux_app: FastAPI, serve: Callable[[FastAPI], str]) -> None:
    # Given the UI served (its assets built by scripts/build-ui, as ./scripts/test does)
    web.mount(ionflux_app)
    url = serve(ionflux_app)

    # When the page's scripts are fetched, then they are htmx 4 and its SSE extension
    with httpx.Client(timeout=10) as client:
        core = client.get(f"{url}/static/vendor/htmx.min.js")
        sse = client.get(f"{url}/static/vendor/ext/hx-sse.min.js")
    assert core.status_code == 200, "the web UI's assets are not built: run `bash scripts/build-ui`"
    assert sse.status_code == 200
    assert "4.0." in core.text  # the version package.json pins (docs/ui.md)
    assert "hx-sse:connect" in sse.text
