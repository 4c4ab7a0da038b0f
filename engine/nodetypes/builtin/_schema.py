"""Small JSON Schema fragments and literal-value helpers the built-in types share."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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


def _authority(url: str) -> tuple[str, str] | None:
    """(scheme, host[:port]) as written, or None when the URL is not ``scheme://...``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return scheme, authority.rpartition("@")[2]


def literal_target(url: object) -> Target | None:
    """Where ``url`` goes when its scheme, host and port are written literally (expressions elsewhere in the
    URL, in its path, query or credentials, do not hide the host)."""
    if not isinstance(url, str):
        return None
    parts = _authority(url)
    if parts is None or has_template(parts[0]) or has_template(parts[1]):
        return None
    return url_target(url)


def url_problem(url: object) -> str | None:
    """Why a literal URL cannot be requested, or None (URLs that start with an expression are checked later)."""
    if not isinstance(url, str) or url.lstrip().startswith(("{{", "{%")):
        return None
    parts = _authority(url)
    if parts is None or parts[0].lower() not in ("http", "https") or "\\" in url.split("?")[0]:
        return f"{url[:60]!r} is not an absolute http(s) URL"
    if has_template(parts[1]):
        return None
    try:
        urlsplit(url).port  # noqa: B018 - parsing the port is the check
    except ValueError as e:
        return f"{url[:60]!r}: {e}"
    if url_target(url) is None:
        return f"{url[:60]!r} has no host"
    return None


def targets_of(url: object) -> frozenset[Target]:
    target = literal_target(url)
    return frozenset({target}) if target else frozenset()


def literal_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
