"""The owner's co-pilot budget, as the UI's pages spend it: every call to Jules from a page (a Builder message, Ask
Jules to fix) counts against the same per-owner limit as the API's co-pilot calls. The composition root gives the
limit as ``app.state.ui_copilot_wait`` (without one, nothing is limited)."""

from __future__ import annotations

import math
from collections.abc import Callable

from fastapi import Request

Waiter = Callable[[Request, str], float]


def wait_seconds(request: Request, owner_id: str) -> int:
    """0 when ``owner_id`` may call Jules now (the call is counted), else the whole seconds to wait (at least 1)."""
    waiter: Waiter | None = getattr(request.app.state, "ui_copilot_wait", None)
    wait = waiter(request, owner_id) if waiter is not None else 0.0
    return max(1, math.ceil(wait)) if wait > 0 else 0
