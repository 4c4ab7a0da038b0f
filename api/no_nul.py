"""Requests holding a NUL character (U+0000) refused at the edge, the same on every database: ``NoNul``."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from api.body_limit import App, Receive, Scope, Send
from api.v1 import errors

# a NUL in a JSON string: \u0000 after an even number of backslashes (an odd number escapes the backslash)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class NoNul:
    """Refuses (422 ``request.invalid``) a request whose path, query or API body holds a NUL character (U+0000).

    PostgreSQL cannot store NUL in text and its driver refuses it in any parameter, so such a request would answer
    500 there and be taken on SQLite; no id, name, message or flow needs one, so every installation refuses it
    first, the same on both. A webhook delivery is the sender's and is not looked at (it is stored as JSON)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith("/hooks/"):
            await self.app(scope, receive, send)
            return
        where = "path" if "\x00" in path else "query" if b"%00" in bytes(scope.get("query_string", b"")) else ""
        body = b""
        if not where and path.startswith("/api/"):  # BodyLimit has capped an API body (the UI's are forms)
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    await self.app(scope, _replay(b"", message, receive), send)
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
            form = dict(scope.get("headers") or []).get(b"content-type", b"").startswith(b"application/x-www-form")
            if b"\x00" in body or _JSON_NUL.search(body) or (form and b"%00" in body):
                where = "body"
        if where:
            refusal = errors.problem(
                422,
                "request.invalid",
                f"the request's {where} holds a NUL character (U+0000)",
                "remove it: no id, name, text or flow takes one (PostgreSQL cannot store it)",
                [{"field": where, "message": "a NUL character"}],
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(body, None, receive) if path.startswith("/api/") else receive, send)


def _replay(body: bytes, then: MutableMapping[str, Any] | None, receive: Receive) -> Receive:
    """``receive`` that hands the app the body read already (or the message that ended the reading) first."""
    first: list[MutableMapping[str, Any]] = [then or {"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> MutableMapping[str, Any]:
        return first.pop() if first else await receive()

    return replayed
