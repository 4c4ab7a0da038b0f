"""The HTTP API, version 1 (``/api/v1``): one router per resource, one error model, one way to say who asks."""

from __future__ import annotations

from fastapi import APIRouter

from api.v1 import account, catalog, copilot, events, flows, heal, runs, secrets
from api.v1.errors import Problem

# what any route may answer besides its success: the one error model (api.v1.errors)
REFUSALS: dict[int | str, dict[str, object]] = {
    status: {"model": Problem, "description": why}
    for status, why in (
        (400, "the request cannot be done as asked"),
        (401, "no valid credentials"),
        (403, "the token's scope or the session's CSRF token does not allow it"),
        (404, "not found (another owner's things are not found either)"),
        (409, "it conflicts with the current state"),
        (413, "the body is too large"),
        (422, "the request or the flow is not valid (with where)"),
        (429, "too many requests: wait as Retry-After says"),
    )
}


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=REFUSALS)
    for module in (account, flows, runs, heal, events, copilot, secrets, catalog):
        api.include_router(module.router)
    return api
