"""Payloads (step outputs, run inputs): size limits, blob offloading and bounded previews."""

from __future__ import annotations

import json
import math
from typing import Any

from engine.errors import IonfluxError
from engine.runtime.blobs import BlobStore

BLOB_KEY = "$blob"


class PayloadTooLargeError(IonfluxError):
    code = "payload.too_large"


def dumps(value: Any) -> str:
    """Compact JSON; NaN and infinities are refused (JSON has no such numbers, PostgreSQL's json type neither)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_default, allow_nan=False)


def loads(text: str | bytes) -> Any:
    """JSON from outside (a webhook's body, an event's data): ``ValueError`` for NaN, Infinity or a number too large
    for a float (1e999), which Python's parser would take but JSON (and the run's stored input) cannot hold."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:40]} is too large for a JSON number here")
    return number


def _default(value: Any) -> Any:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON (steps must return JSON values)")


def size_error(what: str, size: int, limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"{what} is {size:,} bytes of JSON, over the limit of {limit:,} bytes",
        hint="return less data, or raise IONFLUX_MAX_PAYLOAD_BYTES (large data is better passed by reference)",
    )


def store(value: Any, blobs: BlobStore, *, inline_limit: int, max_bytes: int, what: str) -> tuple[Any, Any]:
    """-> (the value as stored in an event, the value as JSON gives it back).

    The stored form is the JSON value itself, or ``{"$blob": ref}`` when its JSON is larger than inline_limit.
    The run continues with the JSON round trip of the value, never the live object, so a step in this process
    and a replay elsewhere see the same thing (tuples become lists, integer keys strings). Raises TypeError or
    ValueError for what JSON cannot hold.
    """
    if value is None or isinstance(value, bool | int | str):
        return value, value
    text = dumps(value)
    size = len(text.encode())
    if size > max_bytes:
        raise size_error(what, size, max_bytes)
    normalised = json.loads(text)
    if size <= inline_limit:
        return normalised, normalised
    return {BLOB_KEY: blobs.put(text.encode())}, normalised


def load(stored: Any, blobs: BlobStore) -> Any:
    if isinstance(stored, dict) and len(stored) == 1 and BLOB_KEY in stored:
        return json.loads(blobs.get(stored[BLOB_KEY]))
    return stored


def preview(value: Any, limit: int, redact: tuple[str, ...] = ()) -> str | None:
    """A bounded, secret-free text of a payload for listings and the UI (never used to compute anything)."""
    if value is None:
        return None
    try:
        text = dumps(value)
    except TypeError:
        text = repr(value)
    text = scrub(text, redact)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def scrub(text: str, redact: tuple[str, ...]) -> str:
    """Replace every secret value in ``text`` (logs, errors, previews) with ``***``: as written, as JSON writes it
    (a key with newlines or quotes is escaped inside JSON) and as Python's repr writes it (in error messages)."""
    for secret in redact:
        if not secret:
            continue
        for form in {
            secret,
            json.dumps(secret, ensure_ascii=False)[1:-1],
            json.dumps(secret)[1:-1],
            repr(secret)[1:-1],
        }:
            if form:
                text = text.replace(form, "***")
    return text


def redact_value(value: Any, redact: tuple[str, ...]) -> Any:
    """``value`` with every secret value inside its strings (and keys) replaced by ``***``.

    Applied to step outputs before they are recorded: an API that echoes a token back, or a step that returns a
    secret, must not put its value in the database, the event log or a later step's input.
    """
    if not redact:
        return value
    if isinstance(value, str):
        return scrub(value, redact)
    if isinstance(value, dict):
        return {scrub(str(k), redact): redact_value(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, redact) for v in value]
    return value
