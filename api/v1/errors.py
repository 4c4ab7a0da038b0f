"""One error model at the edge: every refusal is ``{"error": {"code", "message", "hint", "location"?}}`` with the
status that says why. Domain errors keep their stable codes; validation errors say where (the flow's file, line
and node, or the request field); nothing else leaks: an unexpected failure answers 500 with an id to find it in
the server's log, never a stack trace or a secret."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.dsl.issue import FlowValidationError
from engine.errors import IonfluxError
from engine.store.ids import new_id

log = logging.getLogger("ionflux.api")

# status by error code: exact codes first, then by their last part
EXACT = {
    "flow.invalid": 422,
    "flow.id_taken": 409,
    "run.refused": 409,
    "run.not_rerunnable": 409,
    "heal.no_failed_step": 409,
    "heal.changed": 409,
    "copilot.chat": 409,
    "copilot.edit_invalid": 422,
    "copilot.session_not_found": 404,
    "copilot.change_not_found": 404,
    "copilot.message_invalid": 422,
    "copilot.draft_invalid": 422,
    "auth.required": 401,
    "auth.invalid": 401,
    "auth.forbidden": 403,
    "auth.csrf": 403,
    "owner.exists": 409,
    "setup.done": 409,
    "request.too_large": 413,
    "request.rate_limited": 429,
    "copilot.no_valid_flow": 422,
}
SUFFIX = {"not_found": 404, "invalid": 422, "exists": 409, "refused": 409, "conflict": 409}
# the framework's own refusals: a body it could not parse (JSON nested too deep, …; answered as 422 like every
# invalid request), no route, or not this method
ROUTING = {
    400: ("request.invalid", "the body could not be read: send JSON (or YAML where the route says so), as documented"),
    404: ("route.not_found", "the API's routes are listed at /api/docs (the schema: /api/openapi.json)"),
    405: ("route.method_not_allowed", "the Allow header lists the methods this route takes"),
}


class ErrorBody(BaseModel):
    code: str
    message: str
    hint: str = ""
    location: Any = None


class Problem(BaseModel):
    """Every non-2xx answer of the API."""

    error: ErrorBody


class ApiError(IonfluxError):
    """A refusal raised in a route with an explicit status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        hint: str = "",
        location: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, hint=hint, code=code)
        self.status = status
        self.location = location
        self.headers = headers or {}  # e.g. Retry-After on a 429


def status_of(code: str) -> int:
    return EXACT.get(code) or SUFFIX.get(code.rsplit(".", 1)[-1], 400)


def problem(status: int, code: str, message: str, hint: str = "", location: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "hint": hint}
    if location is not None:
        body["location"] = location
    return JSONResponse({"error": body}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_r: Request, e: ApiError) -> JSONResponse:
        answer = problem(e.status, e.code, e.message, e.hint, e.location)
        answer.headers.update(e.headers)
        return answer

    @app.exception_handler(FlowValidationError)
    async def invalid_flow(_r: Request, e: FlowValidationError) -> JSONResponse:
        issues = [i.to_dict() for i in e.issues]
        return problem(422, e.code, e.message, e.hint, {"issues": issues})

    @app.exception_handler(IonfluxError)
    async def domain(_r: Request, e: IonfluxError) -> JSONResponse:
        return problem(status_of(e.code), e.code, e.message, e.hint)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_r: Request, e: RequestValidationError) -> JSONResponse:
        found = [_located(x) for x in e.errors()]
        first = found[0] if found else {"field": "", "message": "invalid"}
        return problem(
            422,
            "request.invalid",
            f"{first['field']}: {first['message']}" if first["field"] else "the request is not valid",
            "see the route's body and parameters in the API's schema at /api/docs (/api/openapi.json)",
            found,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_r: Request, e: StarletteHTTPException) -> JSONResponse:
        code, hint = ROUTING.get(e.status_code, ("http.error", ""))
        code, hint = getattr(e, "code", code), getattr(e, "hint", hint)  # a refusal that names its own (ui.visitor)
        answer = problem(422 if e.status_code == 400 else e.status_code, code, str(e.detail), hint)
        answer.headers.update(e.headers or {})  # a 405's Allow
        return answer

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception) -> JSONResponse:
        incident = new_id()
        log.exception("unexpected error %s on %s %s", incident, request.method, request.url.path)
        return problem(
            500,
            "server.error",
            f"an unexpected error ({incident}); it is in the server's log",
            f"try again; if it persists, give the server's operator the incident id {incident}",
        )


def _located(error: Mapping[str, Any]) -> dict[str, str]:
    """One of pydantic's request errors as {field, message}, in words for people: an unknown field says so, and
    a body that is not JSON says where and why instead of "JSON decode error" at ``body.13``."""
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", ""))
    if error.get("type") == "extra_forbidden":
        message = f"unknown field '{loc[-1]}'" if loc else "unknown field"
    elif error.get("type") == "json_invalid":
        why = (error.get("ctx") or {}).get("error", "")
        at = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        message, loc = f"not JSON{at}: {why}".rstrip(": "), loc[:1]
    return {"field": ".".join(str(p) for p in loc), "message": message}
