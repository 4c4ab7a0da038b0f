"""The web UI's HTTP surface: its static files at ``/static`` and its pages under ``/ui``.

``mount(app)`` is the one call the composition root makes (``api.app.create_app``); it is safe to call twice.
The pages are server-rendered Jinja2 templates (``ui/templates/``) made live with htmx; the third-party assets
(htmx and its SSE extension) are built from the npm registry into ``ui/static/vendor/`` by ``scripts/build-ui``
and are not committed (docs/ui.md, "Front-end assets").

For now the only page is ``/ui/smoke``: the smallest page that proves the stack end to end (templates, static
assets, an htmx swap, a Server-Sent Events stream that resumes from ``Last-Event-ID``). The browser tests load it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sse_starlette import EventSourceResponse, ServerSentEvent

from ui import pages
from ui.rendering import NAV, page
from ui.visitor import SignInRequired, known_visitor

log = logging.getLogger("ionflux.ui")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = STATIC / "vendor"
TEMPLATES = HERE / "templates"

SMOKE_EVENTS = 3  # what /ui/smoke/events sends before its closing "done" event
SMOKE_EVENT_GAP = 0.05  # seconds between them, so a watcher sees them arrive one by one


def assets_built() -> bool:
    """Whether ``scripts/build-ui`` has put htmx into ``ui/static/vendor/`` (a wheel ships them built)."""
    return (VENDOR / "htmx.min.js").is_file() and (VENDOR / "ext" / "hx-sse.min.js").is_file()


def mount(app: FastAPI) -> None:
    """Serve the UI from ``app``: ``/static`` (the UI's own files and the vendored htmx) and the ``/ui`` pages."""
    if getattr(app.state, "ui_mounted", False):
        return
    app.state.ui_mounted = True
    if not assets_built():
        # the API works without them; the pages load but stay inert until the assets are built
        log.warning("the web UI's assets are missing from %s: run scripts/build-ui (needs npm)", VENDOR)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(SignInRequired, _to_sign_in)
    app.include_router(_router(Jinja2Templates(directory=TEMPLATES)))
    for router in pages.routers():  # every screen in ui/pages/
        app.include_router(router)
    app.include_router(_missing())  # last: only what no screen answers

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        """The server's address opens the Builder on the demo flow (ready to run), with a suggested sentence."""
        return RedirectResponse("/ui/builder?demo=1", status_code=307)


async def _to_sign_in(request: Request, e: Exception) -> RedirectResponse:
    """A page's stranger goes to the login page (htmx requests follow ``HX-Redirect`` instead of a 303)."""
    assert isinstance(e, SignInRequired)
    target = (e.headers or {}).get("Location", "/ui/login")
    answer = RedirectResponse(target, status_code=303)
    answer.headers["HX-Redirect"] = target
    cookie = getattr(getattr(request.app.state, "ui_accounts", None), "cookie", None)
    if cookie and cookie in request.cookies:  # a session that has expired (or ended elsewhere): forget it
        answer.delete_cookie(cookie, path="/")
    return answer


def _missing() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.api_route("/ui/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
    def missing(request: Request, rest: str) -> HTMLResponse:
        """A page address with no page: an HTML page that says so and where to go (not the API's JSON 404)."""
        who = known_visitor(request)
        return page(request, "page_missing.html", who, {"nav": NAV if who is not None else ()}, status=404)

    return router


def _router(templates: Jinja2Templates) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/smoke", response_class=HTMLResponse)
    def smoke(request: Request) -> HTMLResponse:
        """The stack's smoke page: a button that swaps in server HTML, a list fed by an SSE stream."""
        return templates.TemplateResponse(request, "smoke.html", {"events": SMOKE_EVENTS})

    @router.get("/smoke/fragment", response_class=HTMLResponse)
    def smoke_fragment(request: Request) -> HTMLResponse:
        """The HTML the smoke page's button swaps in (it says whether htmx asked for it)."""
        how = "by htmx" if request.headers.get("hx-request") == "true" else "without htmx"
        return templates.TemplateResponse(request, "smoke_fragment.html", {"how": how})

    @router.get("/smoke/events")
    async def smoke_events(request: Request) -> EventSourceResponse:
        """``SMOKE_EVENTS`` HTML list items with ids 1..n, then a ``done`` event that tells the page to close.

        A reconnecting client sends ``Last-Event-ID``; the stream resumes after it, as the live screens will.
        """
        return EventSourceResponse(_smoke_stream(_last_event_id(request)))

    return router


async def _smoke_stream(after: int) -> AsyncIterator[ServerSentEvent]:
    for n in range(after + 1, SMOKE_EVENTS + 1):
        await asyncio.sleep(SMOKE_EVENT_GAP)
        yield ServerSentEvent(data=f'<li class="event">event {n} of {SMOKE_EVENTS}</li>', id=str(n))
    yield ServerSentEvent(event="done", data="")


def _last_event_id(request: Request) -> int:
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isdigit() else 0
