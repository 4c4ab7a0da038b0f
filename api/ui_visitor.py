"""The UI's visitors, from the API's credentials: a browser session cookie, or the open local demo; what the UI's
pages see of the signed-in owner (ui.visitor). API tokens are for programs, not pages, so they are not read."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from api.accounts import Accounts, Principal
from api.v1.deps import COOKIE, DEMO_ACTOR, SAFE, on_this_machine
from engine.store.tables import LOCAL_OWNER
from ui.visitor import Visitor, same_origin


def find_visitor(request: Request) -> Visitor | None:
    accounts: Accounts = request.app.state.accounts
    cookie = request.cookies.get(COOKIE)
    if cookie:
        principal = accounts.by_session(cookie)
        if principal is not None:
            owner = accounts.owner(principal.owner_id) or {}
            return Visitor(principal.owner_id, str(owner.get("name") or "you"), principal.scope, principal.csrf)
    if getattr(request.app.state, "open_local", False) and on_this_machine(request) and not accounts.local_claimed():
        # the open demo: a page change still needs the same origin and htmx's header (api.v1.deps._local_demo)
        if request.method not in SAFE and not (same_origin(request) and request.headers.get("hx-request")):
            return None
        return Visitor(LOCAL_OWNER, "local demo", "admin", None, demo=True)
    return None


def record_change(accounts: Accounts) -> Callable[[Visitor, str, str, dict[str, object] | None], None]:
    """The UI's audit hook: a page's change goes into the owner's audit log, by "session" or "local demo"."""

    def record(who: Visitor, action: str, target: str, detail: dict[str, object] | None) -> None:
        actor = DEMO_ACTOR if who.demo else "session"
        accounts.audit(Principal(who.owner_id, "owner", who.scope, actor), action, target, detail)

    return record
