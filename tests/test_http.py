"""`http.request` against a real HTTP server on loopback: methods, bodies, auth, redirects, limits, status rules,
and the SSRF table (every crafted URL refused with a clear error)."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from engine.core.state import StepKey
from engine.steps.call import StepCall, StepFailure
from engine.steps.chat import discord_post, slack_post
from engine.steps.http import HttpPolicy, blocked_reason, request

LOOPBACK_ONLY = HttpPolicy(allow_networks=(ipaddress.ip_network("127.0.0.1/32"),), timeout_seconds=2.0)
STRICT = HttpPolicy(timeout_seconds=2.0)


HITS: dict[str, int] = {}
HITS_LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if "/limited-" in path:  # rate-limited once per path, as Discord and Slack do: 429 + Retry-After
            with HITS_LOCK:
                HITS[path] = HITS.get(path, 0) + 1
                first = HITS[path] == 1
            if first:
                self._send(429, b'{"message": "You are being rate limited.", "retry_after": 1.0}', Retry_After="1")
                return
        if path == "/echo":
            echo = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body.decode()}
            self._send(200, json.dumps(echo).encode())
        elif path == "/text":
            self._send(200, b"plain words", "text/plain; charset=utf-8")
        elif path == "/bytes":
            self._send(200, bytes(range(256)), "application/octet-stream")
        elif path == "/slow":
            time.sleep(3)
            self._send(200, b"{}")
        elif path == "/fail":
            self._send(500, b'{"error": "boom"}')
        elif path == "/busy":
            self._send(429, b'{"error": "slow down"}', Retry_After="7")
        elif path == "/missing":
            self._send(404, b'{"error": "no such thing"}')
        elif path == "/huge":
            self._send(200, b"x" * 300_000, "text/plain")
        elif path == "/malformed":
            self._send(200, b'{"unterminated": ', "application/json")
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/echo" if left == 0 else f"/hop/{left - 1}"
            self._send(302, b"", Location=target)
        elif path == "/to-metadata":
            self._send(302, b"", Location="http://169.254.169.254/latest/meta-data/")
        elif path == "/to-private":
            self._send(307, b"", Location="http://10.0.0.7/internal")
        elif path == "/to-other-loopback":
            self._send(301, b"", Location="http://127.0.0.2:9/")
        elif path.startswith("/api/webhooks/"):
            message = json.loads(body)
            ok = "wait=true" in self.path and message.get("content")
            self._send(200 if ok else 400, json.dumps({"id": "m-1", "content": message.get("content")}).encode())
        elif path.startswith("/services/"):
            self._send(200, b"ok", "text/plain")
        elif path == "/api/chat.postMessage":
            message = json.loads(body)
            if self.headers.get("Authorization") != "Bearer xoxb-1":
                reply = {"ok": False, "error": "invalid_auth"}
            elif message["channel"] == "#nope":
                reply = {"ok": False, "error": "not_in_channel"}
            elif message["channel"] == "#busy":
                reply = {"ok": False, "error": "ratelimited"}
            else:
                reply = {"ok": True, "ts": "1.2", "channel": "C1"}
            self._send(200, json.dumps(reply).encode())
        elif path == "/see-other":
            self._send(303, b"", Location="/echo")
        else:
            self._send(404, b"{}")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _route


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def call(with_: dict[str, Any], net: tuple[str, ...] = ("127.0.0.1",), attempt: int = 1) -> StepCall:
    return StepCall(StepKey("fetch"), attempt, "http.request", with_, run_id="run-1", net=net)


def test_json_echo_with_query_headers_auth_and_body(server: str) -> None:
    out = request(
        call(
            {
                "method": "POST",
                "url": f"{server}/echo",
                "query": {"page": 2, "all": True},
                "headers": {"X-Trace": "t1"},
                "json": {"a": 1},
                "auth": {"type": "bearer", "token": "tok"},
                "idempotency_key": True,
            }
        ),
        LOOPBACK_ONLY,
    )
    assert out["status"] == 200
    echo = out["body"]
    assert echo["method"] == "POST" and echo["path"] == "/echo?page=2&all=true"
    assert json.loads(echo["body"]) == {"a": 1}
    assert echo["headers"]["Authorization"] == "Bearer tok"
    assert echo["headers"]["X-Trace"] == "t1" and echo["headers"]["Content-Type"] == "application/json"
    key = echo["headers"]["Idempotency-Key"]
    again = request(call({"url": f"{server}/echo", "idempotency_key": True}), LOOPBACK_ONLY)["body"]
    assert again["headers"]["Idempotency-Key"] == key  # same run, step and attempt: the same key
    other = request(call({"url": f"{server}/echo", "idempotency_key": True}, attempt=2), LOOPBACK_ONLY)["body"]
    assert other["headers"]["Idempotency-Key"] != key


def test_form_basic_auth_text_and_bytes(server: str) -> None:
    echo = request(
        call(
            {
                "method": "PUT",
                "url": f"{server}/echo",
                "form": {"x": "1 2"},
                "auth": {"type": "basic", "username": "u", "password": "p"},
            }
        ),
        LOOPBACK_ONLY,
    )["body"]
    assert echo["body"] == "x=1+2" and echo["headers"]["Authorization"] == "Basic dTpw"
    assert request(call({"url": f"{server}/text"}), LOOPBACK_ONLY)["body"] == "plain words"
    stored: list[bytes] = []

    def put_blob(data: bytes) -> str:
        stored.append(data)
        return "sha256:x"

    policy = HttpPolicy(allow_networks=LOOPBACK_ONLY.allow_networks, put_blob=put_blob)
    body = request(call({"url": f"{server}/bytes", "response": "bytes"}), policy)["body"]
    assert body == {"ref": "sha256:x", "size": 256, "content_type": "application/octet-stream"}
    assert stored == [bytes(range(256))]


def test_redirects_are_followed_bounded_and_303_becomes_get(server: str) -> None:
    out = request(call({"url": f"{server}/hop/3"}), LOOPBACK_ONLY)
    assert out["status"] == 200 and out["url"].endswith("/echo")
    with pytest.raises(StepFailure, match="more than 2 redirects") as e:
        request(call({"url": f"{server}/hop/5", "max_redirects": 2}), LOOPBACK_ONLY)
    assert e.value.code == "http.too_many_redirects"
    echo = request(call({"method": "POST", "url": f"{server}/see-other", "json": {}}), LOOPBACK_ONLY)["body"]
    assert echo["method"] == "GET" and echo["body"] == ""
    kept = request(call({"url": f"{server}/hop/1", "follow_redirects": False, "success_status": [302]}), LOOPBACK_ONLY)
    assert kept["status"] == 302


@pytest.mark.parametrize(
    ("path", "code", "retryable", "fragment"),
    [
        ("/fail", "http.status", True, "answered 500"),
        ("/busy", "http.status", True, "answered 429 (Retry-After: 7)"),
        ("/missing", "http.status", False, "answered 404"),
        ("/malformed", "http.bad_response", False, "not valid JSON"),
        ("/slow", "http.timeout", True, "did not answer within"),
    ],
)
def test_failures_say_what_and_whether_a_retry_can_help(
    server: str, path: str, code: str, retryable: bool, fragment: str
) -> None:
    with pytest.raises(StepFailure) as e:
        request(call({"url": f"{server}{path}"}), LOOPBACK_ONLY)
    assert e.value.code == code and e.value.retryable is retryable
    assert fragment in e.value.message


def test_response_size_is_capped(server: str) -> None:
    with pytest.raises(StepFailure, match="larger than 100,000 bytes") as e:
        request(call({"url": f"{server}/huge", "max_response_bytes": 100_000}), LOOPBACK_ONLY)
    assert e.value.code == "http.response_too_large"
    assert "404" in str(request(call({"url": f"{server}/missing", "success_status": [404]}), LOOPBACK_ONLY)["status"])


def test_only_hosts_in_permissions_net_are_reachable(server: str) -> None:
    with pytest.raises(StepFailure, match=r"not in this node's permissions.net \(api.example.com\)") as e:
        request(call({"url": f"{server}/echo"}, net=("api.example.com",)), LOOPBACK_ONLY)
    assert e.value.code == "http.host_not_allowed"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",  # a name resolving to loopback
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1/",  # octal
        "http://0x7f.0.0.1/",  # hexadecimal
        "http://127.1/",  # shortened
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
        "http://[64:ff9b::7f00:1]/",  # NAT64 form of 127.0.0.1
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fe80::1]/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # carrier-grade NAT
        "http://0.0.0.0/",
        "http://224.0.0.1/",  # multicast
        "http://240.0.0.1/",  # reserved
        "http://[fc00::1]/",  # unique local IPv6
    ],
)
def test_ssrf_table_every_crafted_address_is_refused(url: str) -> None:
    with pytest.raises(StepFailure, match="address: flows may not reach it") as e:
        request(call({"url": url}, net=("*",)), STRICT)
    assert e.value.code == "http.blocked_address"
    assert "IONFLUX_HTTP_ALLOW_NETWORKS" in e.value.hint


@pytest.mark.parametrize("path", ["/to-metadata", "/to-private", "/to-other-loopback"])
def test_ssrf_on_every_redirect_hop(server: str, path: str) -> None:
    with pytest.raises(StepFailure) as e:
        request(call({"url": f"{server}{path}"}, net=("*",)), LOOPBACK_ONLY)  # 127.0.0.1 only is open
    assert e.value.code == "http.blocked_address"


def test_credentials_in_the_url_and_other_schemes_are_refused() -> None:
    for url, fragment in (("http://user:pw@example.com/", "credentials in the URL"), ("ftp://example.com/", "http(s)")):
        with pytest.raises(StepFailure, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            request(call({"url": url}, net=("*",)), STRICT)


def test_public_addresses_pass_the_check() -> None:
    assert blocked_reason("93.184.216.34") is None
    assert blocked_reason("2606:2800:220:1:248:1893:25c8:1946") is None
    assert blocked_reason("::ffff:10.0.0.1") == "private"


def test_a_flow_calls_the_api_and_the_token_never_reaches_the_record(server: str, tmp_path: Any) -> None:
    import sqlalchemy as sa

    from engine.runtime import queries
    from tests.runtime_helpers import run_flow, running

    port = server.rsplit(":", 1)[1]
    text = f"""
    fluxgraph: 1
    id: call-api
    secrets: [api_token]
    nodes:
      - id: fetch
        type: http.request
        permissions: {{net: ["127.0.0.1:{port}"]}}
        with:
          url: "{server}/echo"
          auth: {{type: bearer, token: "{{{{ secrets.api_token }}}}"}}
      - id: shout
        type: log
        needs: [fetch]
        with: {{message: "sent {{{{ nodes.fetch.output.body.headers.Authorization }}}}"}}
    outputs:
      status: "{{{{ nodes.fetch.output.status }}}}"
    """
    with running("embedded", tmp_path, http_allow_networks=("127.0.0.1/32",)) as rt:
        rt.orchestrator.secrets.set("api_token", "tok-SECRET-42")
        run_id, status = run_flow(rt, text)
        assert status == "succeeded"
        steps = {s.key: s for s in queries.run_steps_of(rt.db, run_id)}
        assert steps["fetch"].input_preview is not None and "tok-SECRET-42" not in steps["fetch"].input_preview
        assert steps["shout"].logs == [["info", "sent Bearer ***"]]
        with rt.db.begin() as conn:
            previews = conn.execute(sa.select(sa.func.group_concat(run_steps_preview()))).scalar()
        assert "tok-SECRET-42" not in (previews or "")


def run_steps_preview() -> Any:
    from engine.store.tables import run_steps

    return run_steps.c.input_preview + run_steps.c.output_preview


def test_discord_and_slack_messages_reach_a_server_playing_them(server: str) -> None:
    posted = discord_post(
        StepCall(
            StepKey("d"),
            1,
            "discord.post",
            {"webhook_url": f"{server}/api/webhooks/1/abc", "content": "hi"},
            net=("127.0.0.1",),  # a test server is not a Discord host: the node lists it
        ),
        LOOPBACK_ONLY,
    )
    assert posted == {"status": 200, "message_id": "m-1"}
    hook = slack_post(
        StepCall(
            StepKey("s"), 1, "slack.post", {"webhook_url": f"{server}/services/T/B/x", "text": "hi"}, net=("127.0.0.1",)
        ),
        LOOPBACK_ONLY,
    )
    assert hook["ok"] is True
    api = f"{server}/api"
    sent = slack_post(
        StepCall(StepKey("s"), 1, "slack.post", {"token": "xoxb-1", "channel": "#general", "text": "hi"}),
        LOOPBACK_ONLY,
        api,
    )
    assert sent == {"ok": True, "ts": "1.2", "channel": "C1"}
    for channel, token, error, retryable in (
        ("#nope", "xoxb-1", "not_in_channel", False),
        ("#busy", "xoxb-1", "ratelimited", True),
        ("#general", "wrong", "invalid_auth", False),
    ):
        with pytest.raises(StepFailure, match=f"Slack refused the message: {error}") as e:
            slack_post(
                StepCall(StepKey("s"), 1, "slack.post", {"token": token, "channel": channel, "text": "x"}),
                LOOPBACK_ONLY,
                api,
            )
        assert e.value.code == "slack.error" and e.value.retryable is retryable


def test_chat_nodes_keep_private_addresses_closed() -> None:
    with pytest.raises(StepFailure) as e:
        discord_post(
            StepCall(StepKey("d"), 1, "discord.post", {"webhook_url": "http://169.254.169.254/x", "content": "x"}),
            STRICT,
        )
    assert e.value.code == "http.host_not_allowed"  # not a Discord host, and not in permissions.net


def test_discord_and_slack_rate_limits_are_retried_after_retry_after_in_a_run(server: str, tmp_path: Any) -> None:
    import uuid

    from tests.runtime_helpers import attempts, flow, running

    tag = uuid.uuid4().hex[:8]
    retry = "{max_attempts: 3, initial_delay: 10ms, jitter: false}"
    text = f"""
    fluxgraph: 1
    id: notify
    nodes:
      - id: discord
        type: discord.post
        permissions: {{net: ["127.0.0.1"]}}
        retry: {retry}
        with: {{webhook_url: "{server}/api/webhooks/limited-{tag}/x", content: "deployed"}}
      - id: slack
        type: slack.post
        permissions: {{net: ["127.0.0.1"]}}
        retry: {retry}
        with: {{webhook_url: "{server}/services/limited-{tag}/x", text: "deployed"}}
    """
    with running("embedded", tmp_path, http_allow_networks=("127.0.0.1/32",)) as rt:
        _, version = rt.orchestrator.save_flow(flow(text), "notify.yaml")
        run_id = rt.orchestrator.start_run(version, None)
        assert str(rt.wait(run_id, 30)) == "succeeded"
        rows = attempts(rt, run_id)
    for key in ("discord", "slack"):
        first, second = [r for r in rows if r.key == key]
        assert first.error["code"] == "http.status" and first.error["retry_after"] == 1.0
        assert "429" in first.error["message"] and "Retry-After: 1" in first.error["message"]
        assert second.status == "succeeded"
        # the node's backoff says 10 ms; the service said 1 s, and the retry waited for it
        assert (second.queued_at - first.finished_at).total_seconds() >= 0.99
