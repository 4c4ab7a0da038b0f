"""Webhook triggers over HTTP: signatures in the senders' styles (vectors computed from their documented
algorithms), refusals that store nothing, duplicate deliveries starting one run, and a real loopback server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api.app import create_app
from api.server import serve_in_thread
from engine.runtime import queries
from engine.runtime.runtime import Runtime
from engine.store.tables import trigger_inbox
from tests.runtime_helpers import flow, running

SECRET = "It's a Secret to Everybody"  # GitHub's documented example secret

GITHUB = """
fluxgraph: 1
id: github-hook
secrets: [hook_key]
triggers:
  - type: webhook
    secret: hook_key
    signature: {header: X-Hub-Signature-256, algorithm: sha256, encoding: hex, prefix: "sha256="}
nodes:
  - id: say
    type: text.template
    with: {template: "{{ trigger.body.action }} #{{ trigger.body.number }}"}
outputs:
  said: "{{ nodes.say.output.text }}"
"""
SHOPIFY = """
fluxgraph: 1
id: shopify-hook
secrets: [hook_key]
triggers:
  - type: webhook
    secret: hook_key
    signature: {header: X-Shopify-Hmac-Sha256, algorithm: sha256, encoding: base64}
nodes:
  - {id: say, type: text.template, with: {template: "order {{ trigger.body.id }}"}}
"""
STRIPE = """
fluxgraph: 1
id: stripe-hook
secrets: [hook_key]
triggers:
  - type: webhook
    secret: hook_key
    signature: {style: stripe, tolerance: 300}
nodes:
  - {id: say, type: text.template, with: {template: "{{ trigger.body.type }}"}}
"""
OPEN = """
fluxgraph: 1
id: open-hook
triggers:
  - {type: webhook, dedupe_header: X-Delivery}
nodes:
  - {id: say, type: text.template, with: {template: "{{ trigger.body }} {{ trigger.query.source }}"}}
outputs:
  said: "{{ nodes.say.output.text }}"
"""


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with running("embedded", tmp_path) as runtime:
        runtime.orchestrator.secrets.set("hook_key", SECRET)
        yield runtime


def arm(rt: Runtime, text: str) -> str:
    flow_id, version = rt.orchestrator.save_flow(flow(text), "hook.yaml")
    (hook,) = [t for t in rt.triggers.activate(flow_id, version) if t.kind == "webhook"]
    assert hook.token is not None
    return f"/hooks/{hook.token}"


def stored(rt: Runtime) -> int:
    with rt.db.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(trigger_inbox)).scalar_one())


def said(rt: Runtime, run_id: str) -> Any:
    assert str(rt.wait(run_id, 30)) == "succeeded"
    summary = queries.find_run(rt.db, run_id)
    assert summary is not None
    return summary.outputs


def test_githubs_documented_signature_vector_is_accepted(rt: Runtime) -> None:
    # docs.github.com "Validating webhook deliveries": this secret and body sign to this header value
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert "sha256=" + hmac.new(SECRET.encode(), b"Hello, World!", hashlib.sha256).hexdigest() == expected
    url = arm(rt, GITHUB)
    client = TestClient(create_app(rt))
    plain = {"X-Hub-Signature-256": expected, "Content-Type": "text/plain", "X-GitHub-Delivery": "d-0"}
    answer = client.post(url, content=b"Hello, World!", headers=plain)
    assert answer.status_code == 202, answer.text
    body = json.dumps({"action": "opened", "number": 7}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json", "X-GitHub-Delivery": "d-1"}
    answer = client.post(url, content=body, headers=headers)
    assert answer.status_code == 202
    reply = answer.json()
    assert reply["accepted"] and not reply["duplicate"] and reply["run_id"]
    assert said(rt, reply["run_id"]) == {"said": "opened #7"}
    with rt.db.connect() as conn:
        event = conn.execute(sa.select(trigger_inbox.c.trigger).where(trigger_inbox.c.id == reply["event_id"])).scalar()
    assert event is not None
    assert event["headers"]["x-github-delivery"] == "d-1" and "x-hub-signature-256" not in event["headers"]


def test_a_redelivered_webhook_starts_one_run(rt: Runtime) -> None:
    url = arm(rt, GITHUB)
    client = TestClient(create_app(rt))
    body = json.dumps({"action": "closed", "number": 8}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json", "X-GitHub-Delivery": "same"}
    first = client.post(url, content=body, headers=headers).json()
    again = client.post(url, content=body, headers=headers).json()
    assert again["duplicate"] and again["run_id"] == first["run_id"] and again["event_id"] == first["event_id"]
    said(rt, first["run_id"])
    assert len([r for r in queries.list_runs(rt.db, limit=10) if r.flow_id == "github-hook"]) == 1


def test_shopify_and_stripe_signatures(rt: Runtime) -> None:
    client = TestClient(create_app(rt))
    order = json.dumps({"id": 450789469}).encode()
    # Shopify: base64 of the HMAC-SHA256 of the raw body, in X-Shopify-Hmac-Sha256
    shopify = base64.b64encode(hmac.new(SECRET.encode(), order, hashlib.sha256).digest()).decode()
    url = arm(rt, SHOPIFY)
    headers = {"X-Shopify-Hmac-Sha256": shopify, "Content-Type": "application/json", "X-Shopify-Webhook-Id": "w1"}
    assert client.post(url, content=order, headers=headers).status_code == 202
    forged = dict(headers, **{"X-Shopify-Hmac-Sha256": base64.b64encode(b"x" * 32).decode()})
    assert client.post(url, content=order, headers=forged).status_code == 401
    # Stripe: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">, within the tolerance
    event = json.dumps({"id": "evt_1", "type": "checkout.session.completed"}).encode()
    url = arm(rt, STRIPE)

    def stripe(at: int, secret: str = SECRET) -> dict[str, str]:
        v1 = hmac.new(secret.encode(), f"{at}.".encode() + event, hashlib.sha256).hexdigest()
        return {"Stripe-Signature": f"t={at},v1={v1}", "Content-Type": "application/json"}

    now = int(time.time())
    accepted = client.post(url, content=event, headers=stripe(now))
    assert accepted.status_code == 202
    assert said(rt, accepted.json()["run_id"]) == {}  # no outputs declared; the run succeeded
    assert client.post(url, content=event, headers=stripe(now)).json()["duplicate"]  # the event id: same delivery
    stale = client.post(url, content=event, headers=stripe(now - 3600))
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "webhook.stale"
    assert "signature.tolerance" in stale.json()["error"]["hint"]
    wrong = client.post(url, content=event, headers=stripe(now, "not the secret"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "webhook.bad_signature"
    malformed = client.post(url, content=event, headers={"Stripe-Signature": "v1=abc"})
    assert malformed.status_code == 400 and "Stripe-Signature: t=" in malformed.json()["error"]["hint"]


@pytest.mark.parametrize(
    ("change", "status", "code", "hint"),
    [
        ({"url": "/hooks/not-a-token"}, 404, "webhook.not_found", "ionflux triggers"),
        ({"drop": "X-Hub-Signature-256"}, 401, "webhook.unsigned", "signature.header"),
        ({"signature": "sha256=" + "0" * 64}, 401, "webhook.bad_signature", "same secret"),
        ({"signature": "md5=abc"}, 401, "webhook.bad_signature", "prefix"),
        ({"body": b"{not json"}, 400, "webhook.malformed", "valid JSON"),
        ({"body": b'{"amount": NaN}'}, 400, "webhook.malformed", "valid JSON"),
        ({"body": b'{"amount": 1e999}'}, 400, "webhook.malformed", "valid JSON"),
        ({"body": b"x" * 2_000_000}, 413, "webhook.too_large", "IONFLUX_MAX_WEBHOOK_BYTES"),
    ],
)
def test_refused_deliveries_store_nothing_and_say_how_to_fix_them(
    rt: Runtime, change: dict[str, Any], status: int, code: str, hint: str
) -> None:
    url = change.get("url") or arm(rt, GITHUB)
    body = change.get("body", json.dumps({"action": "opened", "number": 1}).encode())
    signature = change.get("signature") or "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signature, "Content-Type": "application/json"}
    headers.pop(change.get("drop", ""), None)
    answer = TestClient(create_app(rt)).post(url, content=body, headers=headers)
    assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
    assert hint in answer.json()["error"]["hint"]
    assert stored(rt) == 0


def test_a_missing_secret_is_a_503_naming_it(rt: Runtime) -> None:
    url = arm(rt, GITHUB)
    rt.orchestrator.secrets.delete("hook_key")
    answer = TestClient(create_app(rt)).post(url, content=b"{}", headers={"X-Hub-Signature-256": "sha256=00"})
    assert answer.status_code == 503 and "hook_key" in answer.json()["error"]["message"]
    assert answer.json()["error"]["hint"] == "ionflux secrets set hook_key"
    assert stored(rt) == 0


def test_a_real_loopback_server_answers_202_and_the_run_sees_body_query_and_headers(rt: Runtime) -> None:
    url = arm(rt, OPEN)
    server = serve_in_thread(create_app(rt), "127.0.0.1:0")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            answer = client.post(url + "?source=shop", content=b"ping", headers={"X-Delivery": "p1"})
            assert answer.status_code == 202
            assert said(rt, answer.json()["run_id"]) == {"said": "ping shop"}
            assert client.put(url, content=b"ping", headers={"X-Delivery": "p1"}).json()["duplicate"]
            assert client.get(url).status_code == 405
            assert client.get("/health").json()["ok"] is True
    finally:
        server.stop()


def test_ionflux_api_serves_webhooks_on_its_own(tmp_path: Path) -> None:
    from tests.cli_helpers import ionflux

    done = ionflux(tmp_path, "api", "--seconds", "1", bind="127.0.0.1:0")
    assert done.returncode == 0 and "ionflux api: HTTP at http://127.0.0.1:" in done.stderr, done.stdout + done.stderr


def test_a_webhook_url_is_rate_limited_with_retry_after(rt: Runtime) -> None:
    from api.settings import Settings

    url = arm(rt, GITHUB)
    client = TestClient(create_app(rt, settings=Settings(webhook_rate_per_minute=2)))
    body = json.dumps({"action": "opened", "number": 1}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answers = [
        client.post(
            url,
            content=body,
            headers={
                "X-Hub-Signature-256": signature,
                "Content-Type": "application/json",
                "X-GitHub-Delivery": f"r{i}",
            },
        )
        for i in range(3)
    ]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["error"]["code"] == "webhook.rate_limited" and int(answers[2].headers["Retry-After"]) >= 1
    assert f"in {answers[2].headers['Retry-After']} s" in answers[2].json()["error"]["hint"]
    other = client.post("/hooks/another-token", content=b"{}")
    assert other.status_code == 404  # the limit is per URL
