"""Browser tests of the web UI: a real server on loopback and Debian's chromium driven by Playwright.

Use it from a test module with ``pytest_plugins = ("tests.browser",)``; the fixtures:

- ``ionflux_app``: the app as ``ionflux up`` builds it (embedded runtime started, open-local demo settings), not yet
  served, so a test may add to it first;
- ``serve``: ``serve(app) -> base URL``, a real uvicorn server on a free loopback port, stopped after the test;
- ``server``: ``ionflux_app`` served (base URL);
- ``page``: a fresh browser context and page (1280x800); a JavaScript error or a failed load fails the test;
- ``screenshot``: ``screenshot(name)`` saves the page as ``artifacts/screenshots/<name>.png`` (git-ignored; CI
  keeps them as artifacts).

Chromium is Debian's (``bash scripts/browser`` installs it and prints its path), never Playwright's own download:
the machines reach package registries only. Found as ``IONFLUX_CHROMIUM``, else ``chromium`` on PATH. Missing, the
browser tests skip on a laptop and fail in CI (``CI`` set), as the other services' tests do. The front-end assets
are the checkout's own build (``bash scripts/build-ui``, which ./scripts/test runs): missing, the tests fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from api.app import create_app
from api.server import Running, serve_in_thread
from api.settings import Settings
from tests.conftest import ROOT
from tests.runtime_helpers import running
from ui import web

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# headless on a machine with no internet: without the background-networking flags chromium keeps trying (and
# failing) to reach Google's services; no sandbox because the tests run as root in CI
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


def _needed(message: str, fix: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI needs it: {fix}", pytrace=False)
    pytest.skip(f"{message} ({fix})")


def chromium_path() -> str:
    """Debian's chromium (or IONFLUX_CHROMIUM); skips the test on a laptop without it, fails it in CI."""
    path = os.environ.get("IONFLUX_CHROMIUM") or shutil.which("chromium")
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return path
    where = f"IONFLUX_CHROMIUM={path}" if os.environ.get("IONFLUX_CHROMIUM") else "chromium (not on PATH)"
    _needed(f"the browser tests need {where}", "`bash scripts/browser` installs Debian's chromium")


# one chromium per test module (~0.5 s to launch): Playwright's sync API keeps an event loop of its own while it
# runs, which must not outlive the UI tests into the rest of the suite
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    assert web.assets_built(), f"the web UI's assets are not in {web.VENDOR}: run `bash scripts/build-ui` (needs npm)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"JavaScript error: {error}"))
    opened.on(
        "console", lambda m: problems.append(f"console: {m.text} ({m.location['url']})") if m.type == "error" else None
    )
    # an aborted request is htmx's own doing (a stream it closed, a request it replaced), not a failure
    opened.on(
        "requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" else problems.append(f"{r.url}: {r.failure}")
    )
    try:
        yield opened
    finally:
        context.close()
    if problems:
        pytest.fail("the page reported problems:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def screenshot(page: Page) -> Callable[[str], Path]:
    """``screenshot(name)``: save the whole page as artifacts/screenshots/<name>.png; returns the path."""

    def take(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def ionflux_app(tmp_path: Path) -> Iterator[FastAPI]:
    """The app as ``ionflux up`` builds it: an embedded runtime (SQLite + in-process queue) with its workers
    started, and the demo's open-local mode (requests from this machine act as the local owner)."""
    with running("embedded", tmp_path) as runtime:
        settings = Settings(home=tmp_path / "home", bind="127.0.0.1:0", open_local=True)
        yield create_app(runtime, settings=settings)


@pytest.fixture
def serve() -> Iterator[Callable[[FastAPI], str]]:
    servers: list[Running] = []

    def start(app: FastAPI) -> str:
        servers.append(serve_in_thread(app, "127.0.0.1:0"))
        return servers[-1].url

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def server(ionflux_app: FastAPI, serve: Callable[[FastAPI], str]) -> str:
    return serve(ionflux_app)
