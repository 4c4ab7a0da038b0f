"""Small JSON Schema fragments and literal-value helpers the built-in types share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.dsl.expression import has_template
from engine.dsl.netpolicy import Target, url_target

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


def literal_target(url: object) -> Target | None:
    """Where ``url`` goes when its scheme and host are written literally (no expression before the path)."""
    if not isinstance(url, str):
        return None
    authority = "/".join(url.split("/", 3)[:3])
    if has_template(authority):
        return None
    return url_target(url)


def targets_of(url: object) -> frozenset[Target]:
    target = literal_target(url)
    return frozenset({target}) if target else frozenset()


def literal_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
