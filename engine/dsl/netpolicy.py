"""Which hosts a node may reach: ``permissions.net`` patterns matched against URL targets.

Patterns: ``api.example.com`` (any port), ``api.example.com:8443`` (that port only), ``*.example.com``
(subdomains, not the apex), ``127.0.0.1``, ``[::1]:8080`` (IPv6 in brackets), ``*`` (anywhere). The validator
uses this on literal URLs; the HTTP step uses the same function on every resolved URL and redirect hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """A host and port a request goes to. ``explicit`` says whether the URL wrote the port."""

    host: str
    port: int | None = None
    explicit: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit and self.port is not None else host


@dataclass(frozen=True, slots=True)
class HostPattern:
    host: str
    port: int | None = None


def url_target(url: str) -> Target | None:
    """The target of an absolute http(s) URL, or None if it is not one."""
    try:
        parts = urlsplit(url)
        host, explicit_port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or parts.scheme.lower() not in DEFAULT_PORTS:
        return None
    port = explicit_port if explicit_port is not None else DEFAULT_PORTS[parts.scheme.lower()]
    return Target(host.lower().rstrip("."), port, explicit_port is not None)


def parse_pattern(text: str) -> HostPattern:
    text = text.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    return HostPattern(host.rstrip("."), int(port) if port.isdigit() else None)


def allows(pattern: HostPattern, target: Target) -> bool:
    if pattern.port is not None and pattern.port != target.port:
        return False
    if pattern.host == "*":
        return True
    if pattern.host.startswith("*."):
        return target.host.endswith(pattern.host[1:])
    return target.host == pattern.host


def allowed(patterns: Iterable[str], target: Target) -> bool:
    return any(allows(parse_pattern(p), target) for p in patterns)
