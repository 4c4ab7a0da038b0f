"""Webhook deliveries: check one (size, signature, freshness, body), then accept it into the trigger inbox.

What arrives is untrusted, so everything is checked before anything is stored: a delivery that is too large,
wrongly signed, stale (a replay outside the sender's tolerance) or malformed is refused with the HTTP status that
says why, and leaves no trace. A delivery whose dedupe id (``dedupe_header``, or GitHub's, Shopify's or the
Stripe event's id) was seen before is the same delivery: answered like the first, nothing new starts.
Signatures are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from engine.dsl.model import Signature, WebhookTrigger
from engine.runtime import payloads
from engine.runtime.triggers import Accepted, Armed, Triggers

MAX_BODY_BYTES = 1024 * 1024
# headers a run never sees: credentials, and the signature itself
HIDDEN_HEADERS = {"authorization", "cookie", "proxy-authorization", "stripe-signature"}
# delivery ids well-known senders put in a header: a retried delivery carries the same one
KNOWN_DELIVERY_IDS = ("x-github-delivery", "x-shopify-webhook-id", "x-request-id", "idempotency-key")


class Refused(Exception):
    """A delivery that is not accepted; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True, slots=True)
class Delivery:
    method: str
    headers: Mapping[str, str]  # lower-case names
    query: Mapping[str, str]
    body: bytes


def accept(
    triggers: Triggers,
    trigger: Armed,
    delivery: Delivery,
    secret_of: Callable[[str], str],
    now: Callable[[], float] = time.time,
) -> Accepted:
    """Check a delivery for ``trigger`` and store it (Refused: nothing stored)."""
    config = WebhookTrigger.model_validate(trigger.config)
    if config.secret is not None:
        verify(config.signature or Signature(), secret_of(config.secret), delivery, now())
    body = parse_body(delivery)
    event = {
        "type": "webhook",
        "method": delivery.method,
        "headers": {k: v for k, v in delivery.headers.items() if k not in HIDDEN_HEADERS and k != _header(config)},
        "query": dict(delivery.query),
        "body": body,
        "received_at": datetime.now(UTC).isoformat(),
    }
    key = delivery_id(config, delivery, body)
    return triggers.accept(trigger, event, None, None if key is None else f"webhook:{trigger.position}:{key}")


def verify(signature: Signature, secret: str, delivery: Delivery, now: float) -> None:
    header = signature.header_name
    given = delivery.headers.get(header.lower())
    if not given:
        raise Refused(401, "webhook.unsigned", f"the delivery has no {header} header")
    if signature.style == "stripe":
        _verify_stripe(signature, secret, given, delivery.body, now)
        return
    if signature.prefix and not given.startswith(signature.prefix):
        raise Refused(401, "webhook.bad_signature", f"{header} does not start with {signature.prefix!r}")
    expected = signature.prefix + _encode(_mac(signature.algorithm, secret, delivery.body), signature.encoding)
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Refused(401, "webhook.bad_signature", f"{header} does not match the body signed with the secret")


def _verify_stripe(signature: Signature, secret: str, given: str, body: bytes, now: float) -> None:
    parts: dict[str, list[str]] = {}
    for item in given.split(","):
        name, _, value = item.strip().partition("=")
        parts.setdefault(name, []).append(value)
    try:
        stamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise Refused(400, "webhook.malformed", "Stripe-Signature has no t=<unix time>") from None
    if abs(now - stamp) > signature.tolerance:
        raise Refused(
            401, "webhook.stale", f"the delivery was signed {abs(now - stamp):.0f} s ago, over {signature.tolerance} s"
        )
    expected = _mac("sha256", secret, f"{stamp}.".encode() + body).hex()
    if not any(hmac.compare_digest(v.encode(), expected.encode()) for v in parts.get("v1", [])):
        raise Refused(401, "webhook.bad_signature", "no v1 signature in Stripe-Signature matches the body")


def parse_body(delivery: Delivery) -> Any:
    """JSON for a JSON content type (400 if it does not parse), a form as a mapping, else text."""
    kind = delivery.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return payloads.loads(delivery.body) if delivery.body else None
        except (ValueError, UnicodeDecodeError) as e:
            raise Refused(400, "webhook.malformed", f"the body is not JSON: {e}") from None
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(delivery.body.decode(errors="replace"), keep_blank_values=True))
    return delivery.body.decode(errors="replace")


def delivery_id(config: WebhookTrigger, delivery: Delivery, body: Any) -> str | None:
    """What makes a retried delivery the same one: the configured header, a well-known sender's, Stripe's id."""
    if config.dedupe_header is not None:
        return delivery.headers.get(config.dedupe_header.lower()) or None
    for name in KNOWN_DELIVERY_IDS:
        if delivery.headers.get(name):
            return delivery.headers[name]
    if config.signature is not None and config.signature.style == "stripe" and isinstance(body, dict):
        return str(body.get("id")) if body.get("id") else None
    return None


def _header(config: WebhookTrigger) -> str | None:
    return None if config.signature is None else config.signature.header_name.lower()


def _mac(algorithm: str, secret: str, data: bytes) -> bytes:
    return hmac.new(secret.encode(), data, getattr(hashlib, algorithm)).digest()


def _encode(digest: bytes, encoding: str) -> str:
    return base64.b64encode(digest).decode() if encoding == "base64" else digest.hex()
