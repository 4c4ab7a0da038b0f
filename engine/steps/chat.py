"""``discord.post`` and ``slack.post``: chat messages through the same SSRF-protected HTTP client as
``http.request``.

A chat node may reach its service's own hosts (Discord's webhooks, Slack's webhooks and Web API) without listing
them in ``permissions.net``, since the webhook URL usually comes from a secret; any other host must be listed, and
private addresses stay closed unless the operator opened them. The Slack Web API base URL is a setting, so tests
(and Slack-compatible servers) can point it elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engine.steps.call import StepCall, StepFailure
from engine.steps.http import HttpPolicy, request

DISCORD_HOSTS = ("discord.com", "discordapp.com", "*.discord.com", "*.discordapp.com")
SLACK_HOSTS = ("hooks.slack.com", "slack.com")
SLACK_API = "https://slack.com/api"


def _post(
    call: StepCall, policy: HttpPolicy, url: str, payload: dict[str, Any], hosts: tuple[str, ...], **extra: Any
) -> Any:
    with_ = {"method": "POST", "url": url, "json": payload, "response": "auto", **extra}
    return request(replace(call, with_=with_, net=(*call.net, *hosts)), policy)


def discord_post(call: StepCall, policy: HttpPolicy) -> Any:
    payload = {k: call.with_[k] for k in ("content", "username", "embeds") if k in call.with_}
    url = str(call.with_["webhook_url"])
    url += ("&" if "?" in url else "?") + "wait=true"  # Discord answers with the created message
    response = _post(call, policy, url, payload, DISCORD_HOSTS)
    body = response["body"] if isinstance(response["body"], dict) else {}
    return {"status": response["status"], "message_id": str(body.get("id", ""))}


def slack_post(call: StepCall, policy: HttpPolicy, api_url: str = SLACK_API) -> Any:
    with_ = call.with_
    payload = {k: with_[k] for k in ("text", "blocks", "thread_ts") if k in with_}
    if "webhook_url" in with_:
        response = _post(call, policy, str(with_["webhook_url"]), payload, SLACK_HOSTS)
        return {"ok": response["status"] == 200, "ts": "", "channel": ""}
    payload["channel"] = with_["channel"]
    hosts = (*SLACK_HOSTS, _host_of(api_url))
    auth = {"type": "bearer", "token": str(with_["token"])}
    response = _post(call, policy, api_url.rstrip("/") + "/chat.postMessage", payload, hosts, auth=auth)
    body = response["body"] if isinstance(response["body"], dict) else {}
    if not body.get("ok"):
        error = str(body.get("error", "unknown_error"))
        raise StepFailure(
            "slack.error",
            f"Slack refused the message: {error}",
            retryable=error in ("ratelimited", "service_unavailable", "internal_error", "request_timeout"),
            hint="see https://api.slack.com/methods/chat.postMessage#errors (not_in_channel: invite the bot)",
        )
    return {"ok": True, "ts": str(body.get("ts", "")), "channel": str(body.get("channel", ""))}


def _host_of(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def executors(policy: HttpPolicy, slack_api_url: str = SLACK_API) -> dict[str, Callable[[StepCall], Any]]:
    return {
        "discord.post": lambda call: discord_post(call, policy),
        "slack.post": lambda call: slack_post(call, policy, slack_api_url),
    }
