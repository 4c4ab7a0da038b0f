"""The ``http.request`` executor, SSRF-protected.

Every hop (the first request and each redirect) is checked twice: its host must match the node's
``permissions.net``, and every address its name resolves to must be public (not loopback, private, link-local
with the cloud metadata address, carrier-grade NAT, multicast, reserved or unspecified, IPv4-mapped and NAT64
forms included), unless the operator opened that network (``IONFLUX_HTTP_ALLOW_NETWORKS``, for tests and
intranets). The connection then goes to the address that was checked, not to a second lookup of the name, so
DNS rebinding between the check and the connection cannot redirect it. Numeric host spellings (``2130706433``,
``0177.0.0.1``, ``0x7f.1``) are resolved the way the C library resolves them, and so are caught.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.client
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from engine.dsl.netpolicy import allowed, url_target
from engine.steps.call import StepCall, StepFailure

REDIRECTS = {301, 302, 303, 307, 308}
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
NAT64 = ipaddress.ip_network("64:ff9b::/96")
USER_AGENT = "ionflux/0.1"


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Operator settings for outgoing HTTP (the node's own `permissions.net` applies on top)."""

    #: networks an operator opened to flows despite being private/loopback (tests: 127.0.0.1/32; intranets)
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    timeout_seconds: float = 30.0
    max_response_bytes: int = 10 * 1024 * 1024
    #: where `response: bytes` bodies go (a content-addressed blob store); None: returned inline as base64
    put_blob: Callable[[bytes], str] | None = None


def blocked_reason(address: str) -> str | None:
    """Why an address must not be reached from a flow, or None if it is public."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)
        if embedded is not None:
            return blocked_reason(str(embedded))
    for attribute, label in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local (cloud metadata lives here)"),
        ("is_private", "private"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_reserved", "reserved"),
    ):
        if getattr(ip, attribute):
            return label
    if not ip.is_global:
        return "not globally routable"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise StepFailure("http.dns_failed", f"cannot resolve {host!r}: {e}", retryable=True) from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _check_hop(url: str, call: StepCall, policy: HttpPolicy) -> tuple[str, int, str]:
    """-> (scheme, port, the checked address to connect to) for one hop, or StepFailure saying why not."""
    parts = urlsplit(url)
    target = url_target(url)
    if target is None or target.port is None:
        raise StepFailure("http.invalid_url", f"{url!r} is not an http(s) URL", hint="write e.g. https://host/path")
    if parts.username is not None or parts.password is not None:
        raise StepFailure("http.invalid_url", "credentials in the URL are refused", hint="use with.auth instead")
    if not allowed(call.net, target):
        patterns = ", ".join(call.net) or "none"
        raise StepFailure(
            "http.host_not_allowed",
            f"{target} is not in this node's permissions.net ({patterns})",
            hint=f"add {target.host!r} to the node's permissions.net if it should be reachable",
        )
    addresses = _resolve(target.host, target.port)
    for address in addresses:
        reason = blocked_reason(address)
        if reason is not None and not any(ipaddress.ip_address(address) in net for net in policy.allow_networks):
            shown = target.host if target.host == address else f"{target.host} ({address})"
            raise StepFailure(
                "http.blocked_address",
                f"{shown} is a {reason} address: flows may not reach it",
                hint="only public addresses are reachable; an operator can open a network to flows with "
                "IONFLUX_HTTP_ALLOW_NETWORKS (e.g. 10.0.0.0/8)",
            )
    return parts.scheme.lower(), target.port, addresses[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, with the certificate verified against the host name (SNI and check)."""

    def __init__(self, address: str, port: int, hostname: str, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._hostname = hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._hostname)  # type: ignore[attr-defined]


def _request_body(with_: Mapping[str, Any]) -> tuple[bytes | None, dict[str, str]]:
    if "json" in with_:
        return json.dumps(with_["json"]).encode(), {"Content-Type": "application/json"}
    if "form" in with_:
        return urlencode(with_["form"]).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
    if "body" in with_:
        return str(with_["body"]).encode(), {}
    return None, {}


def _auth_headers(auth: Mapping[str, Any] | None) -> dict[str, str]:
    if not auth:
        return {}
    if auth["type"] == "bearer":
        return {"Authorization": f"Bearer {auth['token']}"}
    if auth["type"] == "basic":
        token = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {str(auth["header"]): str(auth["value"])}


def _succeeded(status: int, rules: list[Any]) -> bool:
    return any(status == rule if isinstance(rule, int) else str(status)[0] == str(rule)[0] for rule in rules)


def _read(response: http.client.HTTPResponse, limit: int, url: str) -> bytes:
    chunks, size = [], 0
    while chunk := response.read(65536):
        size += len(chunk)
        if size > limit:
            raise StepFailure(
                "http.response_too_large",
                f"the response from {url} is larger than {limit:,} bytes",
                hint="raise with.max_response_bytes, or ask the API for less (pagination, fields)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _body(raw: bytes, content_type: str, mode: str, policy: HttpPolicy) -> Any:
    is_json = "json" in content_type
    if mode == "bytes":
        if policy.put_blob is not None:
            return {"ref": policy.put_blob(raw), "size": len(raw), "content_type": content_type}
        return {"base64": base64.b64encode(raw).decode(), "size": len(raw), "content_type": content_type}
    if mode == "json" or (mode == "auto" and is_json):
        try:
            return json.loads(raw) if raw else None
        except ValueError as e:
            raise StepFailure("http.bad_response", f"the response is not valid JSON: {e}") from None
    return raw.decode("utf-8", "replace")


def request(call: StepCall, policy: HttpPolicy) -> Any:
    with_ = call.with_
    method = str(with_.get("method", "GET")).upper()
    url = str(with_["url"])
    if with_.get("query"):
        parts = urlsplit(url)
        extra = urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in with_["query"].items()})
        url = urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
    body, headers = _request_body(with_)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json, */*;q=0.5", **headers}
    headers.update(_auth_headers(with_.get("auth")))
    headers.update({str(k): str(v) for k, v in (with_.get("headers") or {}).items()})
    if with_.get("idempotency_key"):
        seed = f"{call.run_id}/{call.key}/{call.attempt}".encode()
        headers["Idempotency-Key"] = hashlib.sha256(seed).hexdigest()[:32]
    limit = int(with_.get("max_response_bytes") or policy.max_response_bytes)
    redirects_left = int(with_.get("max_redirects", 5)) if with_.get("follow_redirects", True) else 0
    started = time.monotonic()
    first_host = url_target(url)
    while True:
        scheme, port, address = _check_hop(url, call, policy)
        parts = urlsplit(url)
        hostname = parts.hostname or ""
        timeout = max(0.1, policy.timeout_seconds - (time.monotonic() - started))
        connection: http.client.HTTPConnection = (
            _PinnedHTTPS(address, port, hostname, timeout)
            if scheme == "https"
            else http.client.HTTPConnection(address, port, timeout=timeout)
        )
        path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        host_header = hostname if port in (80, 443) else f"{hostname}:{port}"
        response: http.client.HTTPResponse | None = None
        try:
            connection.request(method, path, body=body, headers={"Host": host_header, **headers})
            response = connection.getresponse()
            status = response.status
            if status in REDIRECTS and redirects_left > 0 and response.getheader("Location"):
                response.read(limit)
                url = urljoin(url, response.getheader("Location") or "")
                redirects_left -= 1
                if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
                    method, body = "GET", None
                    headers.pop("Content-Type", None)
                target = url_target(url)
                if first_host is None or target is None or target.host != first_host.host:
                    headers.pop("Authorization", None)  # credentials are for the host they were written for
                continue
            if status in REDIRECTS and with_.get("follow_redirects", True):
                raise StepFailure(
                    "http.too_many_redirects",
                    f"more than {with_.get('max_redirects', 5)} redirects from {with_['url']}",
                )
            raw = _read(response, limit, url)
            content_type = response.getheader("Content-Type") or ""
            response_headers = {k.lower(): v for k, v in response.getheaders()}
        except TimeoutError:
            message = f"{method} {url} did not answer within {timeout:.1f} s"
            raise StepFailure("http.timeout", message, retryable=True) from None
        except (OSError, http.client.HTTPException) as e:
            message = f"{method} {url}: {type(e).__name__}: {e}"
            raise StepFailure("http.connection_failed", message, retryable=True) from None
        finally:
            if response is not None:
                response.close()
            connection.close()
        break
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    output = {
        "status": status,
        "headers": response_headers,
        "body": _body(raw, content_type, str(with_.get("response", "auto")), policy),
        "url": url,
        "elapsed_ms": elapsed_ms,
    }
    if not _succeeded(status, list(with_.get("success_status") or ["2xx"])):
        retry_after = response_headers.get("retry-after")
        note = f" (Retry-After: {retry_after})" if retry_after else ""
        raise StepFailure(
            "http.status",
            f"{method} {url} answered {status}{note}: {str(output['body'])[:200]}",
            retryable=status in RETRYABLE_STATUS,
            hint="add the status to with.success_status if it is expected",
            retry_after=parse_retry_after(retry_after) if status in RETRYABLE_STATUS else None,
        )
    call.log.append(("info", f"{method} {url} -> {status} in {elapsed_ms} ms"))
    return output


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # unreadable: the node's own backoff applies
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def executor(policy: HttpPolicy) -> Callable[[StepCall], Any]:
    def run(call: StepCall) -> Any:
        return request(call, policy)

    return run
