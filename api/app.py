"""The HTTP server (FastAPI): the API (``/api/v1``, api.v1), webhook deliveries, health; the web UI mounts here.

``POST|PUT /hooks/{token}``: a webhook trigger's delivery. Checked (size, signature, body) and stored in the
trigger inbox before it is answered ``202`` with the run's id; the run goes on in the workers. A refusal
answers with the status that says why (404 unknown URL, 413 too large, 401 bad or stale signature, 400 malformed,
429 too many deliveries, 503 secret not set) and the API's one error shape, ``{"error": {"code", "message",
"hint"}}``, the hint saying how to fix it; nothing is stored.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api import v1
from api.accounts import Accounts
from api.body_limit import BodyLimit
from api.limits import RateLimit
from api.no_nul import NoNul
from api.security_headers import SecurityHeaders
from api.settings import Settings
from api.ui_accounts import UiAccounts
from api.ui_heal import UiHealer
from api.ui_jules import UiJules
from api.ui_settings import UiSettings
from api.ui_visitor import find_visitor, record_change
from api.v1 import errors
from api.v1.copilot_tools import copilot_wait
from engine.errors import IonfluxError
from engine.runtime import webhooks
from engine.runtime.runtime import Runtime
from engine.runtime.secrets import SecretError
from engine.runtime.triggers import Accepted, Armed
from ui import web

API_BODY_BYTES = 2 * 1024 * 1024  # an API request: a flow, a message, a secret; webhooks have their own limit


def create_app(
    runtime: Runtime,
    *,
    settings: Settings | None = None,
    max_body_bytes: int = webhooks.MAX_BODY_BYTES,
    api_body_bytes: int = API_BODY_BYTES,
) -> FastAPI:
    """``settings``: the server's (model aliases, rate limits); tests and embedders may leave them to the
    environment, read on first use."""
    app = FastAPI(title="IONFLUX", version="1", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.runtime = runtime
    if settings is not None:
        app.state.settings = settings
        app.state.open_local = settings.open_local and is_loopback(settings.bind)
    public = urlsplit((settings or Settings()).public_url)
    app.state.public_origin = f"{public.scheme}://{public.netloc}"  # this server as users reach it (ui.visitor)
    app.state.accounts = Accounts(runtime.db)
    app.state.ui_accounts = UiAccounts(app.state.accounts)  # the UI's sign-in and first run (ui.accounts)
    app.state.ui_jules = UiJules(runtime, settings)  # the Builder's Jules (ui.jules)
    app.state.ui_copilot_wait = copilot_wait  # the Builder's turns share the API's per-owner co-pilot rate limit
    app.state.ui_healer = UiHealer(runtime, settings)  # a failed run's "Ask Jules to fix" (ui.healer)
    app.state.ui_settings = UiSettings(app.state.accounts, settings)  # the Settings screen's tokens (ui.settings)
    errors.install(app)
    app.include_router(v1.router())
    app.add_middleware(NoNul)  # inside BodyLimit: it reads a body already known to be small enough
    app.add_middleware(BodyLimit, max_bytes=api_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: every answer has them, refusals at the edge included
    app.state.ui_visitor = find_visitor  # who is looking at a UI page (session cookie or the open demo)
    app.state.ui_audit = record_change(app.state.accounts)  # pages' changes go into the audit log too
    web.mount(app)  # the web UI: its pages and /static

    @app.get("/health", tags=["health"])  # liveness: no dependency is checked
    def health() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"ok": True, "worker": runtime.worker_id}

    @app.get("/ready", tags=["health"], responses={503: {"model": errors.Problem}})
    def ready() -> JSONResponse:
        """Readiness: the database answers (what a load balancer should check before sending traffic)."""
        try:
            with runtime.db.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:
            return errors.problem(
                503,
                "server.not_ready",
                "the database does not answer",
                "check that the database (IONFLUX_DATABASE_URL) is up and reachable from this server, then ask again",
            )
        return JSONResponse({"ok": True})

    deliveries = RateLimit((settings or Settings()).webhook_rate_per_minute)

    async def hook(token: str, request: Request) -> JSONResponse:
        wait = deliveries.take(token)
        if wait:  # a sender in a loop (or a flood) cannot start runs faster than the limit
            seconds = max(1, round(wait))
            answer = _refusal(
                429,
                "webhook.rate_limited",
                "too many deliveries to this webhook URL",
                f"send it again in {seconds} s (Retry-After); a sender that needs more a minute needs the server's "
                "IONFLUX_WEBHOOK_RATE_PER_MINUTE raised",
            )
            answer.headers["Retry-After"] = str(seconds)
            return answer
        too_large = (
            413,
            "webhook.too_large",
            f"the body is over {max_body_bytes:,} bytes",
            "send a smaller body, or raise the server's IONFLUX_MAX_WEBHOOK_BYTES",
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _refusal(*too_large)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return _refusal(*too_large)
        trigger = await run_in_threadpool(runtime.triggers.by_token, token)
        if trigger is None or not trigger.config.get("enabled", True):
            return _refusal(
                404,
                "webhook.not_found",
                "no active webhook trigger has this URL",
                "copy the URL from `ionflux triggers` (or the flow's page); a deactivated flow's URL answers 404 "
                "until the flow is activated again",
            )
        delivery = webhooks.Delivery(
            request.method,
            {k.lower(): v for k, v in request.headers.items()},
            dict(request.query_params),
            bytes(body),
        )
        try:
            accepted, run_id = await run_in_threadpool(_accept_and_start, runtime, trigger, delivery)
        except webhooks.Refused as e:
            return _refusal(e.status, e.code, e.message, HOOK_HINTS.get(e.code, "see the flow's webhook trigger"))
        except IonfluxError as e:  # the trigger's secret is not in the store
            return _refusal(503, e.code, e.message, e.hint or "ask the flow's owner to check its webhook trigger")
        return JSONResponse(
            {"accepted": True, "duplicate": accepted.duplicate, "event_id": accepted.inbox_id, "run_id": run_id},
            status_code=202,
        )

    for method in ("POST", "PUT"):
        app.add_api_route(
            "/hooks/{token}",
            hook,
            methods=[method],
            status_code=202,
            operation_id=f"webhook_{method.lower()}",
            tags=["webhooks"],
            summary="A webhook trigger's delivery",
            responses={status: {"model": errors.Problem} for status in (400, 401, 404, 413, 422, 429, 503)},
        )
    return app


def is_loopback(bind: str) -> bool:
    """Whether ``host:port`` listens only on this machine (the open demo is refused anywhere else)."""
    host = bind.rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _accept_and_start(runtime: Runtime, trigger: Armed, delivery: webhooks.Delivery) -> tuple[Accepted, str | None]:
    secrets = runtime.orchestrator.secrets

    def secret_of(name: str) -> str:
        value = secrets.resolve([name], runtime.orchestrator.owner_of(trigger.flow_id)).get(name)
        if value is None:
            raise SecretError(
                f"the webhook's secret {name!r} is not set, so its deliveries cannot be verified",
                hint=f"ionflux secrets set {name}",
                code="webhook.secret_missing",
            )
        return value

    accepted = webhooks.accept(runtime.triggers, trigger, delivery, secret_of)
    run_id = None if accepted.duplicate else runtime.orchestrator.start_from_inbox(accepted.inbox_id)
    if run_id is None:  # a duplicate, or another process started it: answer with the run it started
        run_id = runtime.triggers.run_of(accepted.inbox_id)
    return accepted, run_id


# what the sender should do about each refusal engine.runtime.webhooks makes (its Refused carries no hint)
HOOK_HINTS = {
    "webhook.unsigned": "sign each delivery with the webhook's secret, in the header the flow's trigger names "
    "(signature.header)",
    "webhook.bad_signature": "sign the raw body with the same secret the flow's trigger names (`ionflux secrets set "
    "NAME` on the server) and the trigger's algorithm, encoding and prefix",
    "webhook.stale": "send a delivery when it is signed: the sender's clock and the server's must agree within the "
    "trigger's signature.tolerance",
    "webhook.malformed": "send a body its Content-Type describes (valid JSON for application/json) and, for a "
    "Stripe-style signature, Stripe-Signature: t=<unix time>,v1=<signature>",
}


def _refusal(status: int, code: str, message: str, hint: str) -> JSONResponse:
    return errors.problem(status, code, message, hint)
