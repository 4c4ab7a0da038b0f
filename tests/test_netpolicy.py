"""permissions.net patterns against URL targets."""

from __future__ import annotations

import pytest

from engine.dsl.netpolicy import Target, allowed, url_target


@pytest.mark.parametrize(
    ("url", "patterns", "ok"),
    [
        ("https://api.example.com/x", ["api.example.com"], True),
        ("https://API.Example.com./x", ["api.example.com"], True),
        ("https://api.example.com/x", ["*.example.com"], True),
        ("https://example.com/x", ["*.example.com"], False),  # a wildcard covers subdomains, not the apex
        ("https://evil-example.com/x", ["*.example.com"], False),
        ("https://api.example.com:8443/x", ["api.example.com:8443"], True),
        ("https://api.example.com/x", ["api.example.com:8443"], False),  # 443 is not 8443
        ("http://127.0.0.1:8765/api", ["127.0.0.1:8765"], True),
        ("http://127.0.0.1:22/", ["127.0.0.1:8765"], False),  # a port in the pattern is enforced
        ("http://127.0.0.1:22/", ["127.0.0.1"], True),  # no port in the pattern: any port
        ("http://[::1]:8080/x", ["[::1]:8080"], True),
        ("http://[::1]:8081/x", ["[::1]:8080"], False),
        ("http://[::1]/x", ["[::1]"], True),
        ("https://anything.test/", ["*"], True),
        ("https://anything.test/", [], False),
    ],
)
def test_patterns(url: str, patterns: list[str], ok: bool) -> None:
    target = url_target(url)
    assert target is not None
    assert allowed(patterns, target) is ok


def test_targets_print_as_patterns_that_allow_them() -> None:
    for url in ("http://[::1]:8080/x", "https://api.example.com/", "http://127.0.0.1:8765/"):
        target = url_target(url)
        assert target is not None and allowed([str(target)], target)
    assert str(url_target("http://[::1]:8080/x")) == "[::1]:8080"
    assert str(url_target("https://api.example.com/")) == "api.example.com"


def test_non_http_urls_have_no_target() -> None:
    assert url_target("ftp://x/y") is None
    assert url_target("not a url") is None
    assert url_target("http://[::1/") is None
    assert Target("a") < Target("b")
