"""Small JSON Schema fragments and literal-value helpers the built-in types share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.dsl.expression import has_template

ANY: Mapping[str, Any] = {}
STRING: Mapping[str, Any] = {"type": "string"}
NON_EMPTY: Mapping[str, Any] = {"type": "string", "minLength": 1}
STRING_MAP: Mapping[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
DURATION: Mapping[str, Any] = {
    "anyOf": [{"type": "string", "pattern": r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$"}, {"type": "number"}]
}


def obj(properties: Mapping[str, Any], *required: str, **extra: Any) -> dict[str, Any]:
    """An object schema that refuses unknown keys (typos in ``with`` are errors, not silent no-ops)."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def literal_host(url: object) -> str | None:
    """The host of ``url`` when it is written literally (no expression in the scheme/host part)."""
    if not isinstance(url, str):
        return None
    head = url.split("/", 3)
    authority = "/".join(head[:3])
    if has_template(authority):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host or None


def literal_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
