"""Headers every answer carries so that browsers hold the pages to what they are: ``SecurityHeaders``.

- ``X-Frame-Options: DENY`` and ``Content-Security-Policy: frame-ancestors 'none'``: no other site may show a page
  in a frame, where it could trick a visitor into clicking its buttons (clickjacking). Signed-in pages are safe
  from that already (the SameSite cookie stays out of cross-site frames), but the open local demo needs no cookie.
- ``X-Content-Type-Options: nosniff``: a JSON answer or a step's output is never run as a script or a page.
- ``Referrer-Policy: same-origin``: a page's address (a run id, a session id) does not leave with a link.
"""

from __future__ import annotations

from api.body_limit import App, Message, Receive, Scope, Send

HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)
