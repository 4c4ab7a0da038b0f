"""Rendering a page: the shared Jinja2 environment and the context every page gets (the visitor, whether this is
the open demo, the CSRF token htmx sends with every request, the navigation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ui.visitor import Visitor

TEMPLATES = Path(__file__).resolve().parent / "templates"
templates = Jinja2Templates(directory=TEMPLATES)

# the screens that exist
NAV = (
    ("Builder", "/ui/builder"),
    ("Flows", "/ui/flows"),
    ("Runs", "/ui/runs"),
    ("Catalog", "/ui/catalog"),
    ("Settings", "/ui/settings"),
)


def page(
    request: Request, template: str, who: Visitor | None, context: dict[str, Any] | None = None, status: int = 200
) -> HTMLResponse:
    """A whole page (or, for an htmx request, the same template: templates decide what a fragment is)."""
    data = {"visitor": who, "nav": NAV, "path": request.url.path, **(context or {})}
    return templates.TemplateResponse(request, template, data, status_code=status)
