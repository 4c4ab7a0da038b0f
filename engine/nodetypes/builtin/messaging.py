"""Messaging built-ins: ``email.send``, ``discord.post``, ``slack.post``, ``event.publish``, ``flow.call``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from engine.dsl.expression import has_template
from engine.nodetypes.builtin._schema import ANY, NON_EMPTY, STRING, obj, targets_of, url_problem
from engine.nodetypes.registry import Finding, NodeType, Requirements, flat_cost

#: A NATS subject to publish to: dot-separated tokens, no wildcards, no whitespace.
PUBLISH_SUBJECT = re.compile(r"^[^.*>\s]+(?:\.[^.*>\s]+)*$")

_ADDRESSES = {"anyOf": [NON_EMPTY, {"type": "array", "items": NON_EMPTY, "minItems": 1}]}


def _webhook_requires(with_: Mapping[str, Any]) -> Requirements:
    return Requirements(targets=targets_of(with_.get("webhook_url")))


def _email_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    if "body" not in with_ and "html" not in with_:
        yield Finding((), "node.with_invalid", "an email needs a `body` (plain text) or `html`", "add body: ...")


EMAIL_SEND = NodeType(
    name="email.send",
    family="messaging",
    summary="Send an email over the operator's SMTP server (TLS/STARTTLS), plain text and/or HTML.",
    with_schema=obj(
        {
            "to": _ADDRESSES,
            "cc": _ADDRESSES,
            "bcc": _ADDRESSES,
            "from": NON_EMPTY,
            "reply_to": NON_EMPTY,
            "subject": STRING,
            "body": STRING,
            "html": STRING,
        },
        "to",
        "subject",
    ),
    output_schema=obj({"message_id": STRING, "accepted": {"type": "array", "items": STRING}}, "message_id"),
    capabilities=frozenset({"smtp"}),
    cost=flat_cost(0.05, "flat: 0.05 C-ION per email"),
    check=_email_check,
    example={"to": "ops@example.com", "subject": "Report", "body": "{{ nodes.summary.output.text }}"},
)


def _webhook_url_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    problem = url_problem(with_.get("webhook_url"))
    if problem is not None:
        yield Finding(("webhook_url",), "node.with_invalid", problem, "paste the full webhook URL, or use a secret")


def _discord_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    yield from _webhook_url_check(with_)
    if "content" not in with_ and "embeds" not in with_:
        yield Finding((), "node.with_invalid", "a Discord message needs `content` or `embeds`", "add content: ...")


DISCORD_POST = NodeType(
    name="discord.post",
    family="messaging",
    summary="Post a message to a Discord channel through its webhook URL.",
    with_schema=obj(
        {
            "webhook_url": NON_EMPTY,
            "content": {"type": "string", "maxLength": 2000},
            "username": STRING,
            "embeds": {"type": "array", "maxItems": 10, "items": {"type": "object"}},
        },
        "webhook_url",
    ),
    output_schema=obj({"status": {"type": "integer"}, "message_id": STRING}, "status"),
    capabilities=frozenset({"net", "secrets"}),
    requires=_webhook_requires,
    cost=flat_cost(0.05, "flat: 0.05 C-ION per message"),
    check=_discord_check,
    example={"webhook_url": "{{ secrets.discord_webhook }}", "content": "Hello from IONFLUX"},
)


def _slack_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    yield from _webhook_url_check(with_)
    has_webhook = "webhook_url" in with_
    api_keys = [k for k in ("token", "channel") if k in with_]
    if has_webhook and api_keys:
        yield Finding(
            (api_keys[0],),
            "node.with_conflict",
            f"slack.post takes either `webhook_url` or `token` + `channel`, not both (`{api_keys[0]}` here)",
            "keep webhook_url for an incoming webhook, or token + channel for the Web API (chat.postMessage)",
        )
    elif not has_webhook and not api_keys:
        yield Finding(
            (),
            "node.with_missing",
            "slack.post needs `webhook_url`, or `token` and `channel`",
            "add webhook_url: '{{ secrets.slack_webhook }}' (or a bot token with chat:write and a channel)",
        )
    elif not has_webhook and len(api_keys) == 1:
        missing = "channel" if api_keys == ["token"] else "token"
        yield Finding(
            (),
            "node.with_missing",
            f"slack.post with the Web API also needs `{missing}`",
            "add token: '{{ secrets.slack_bot_token }}' and channel: '#general' (a channel name or id)",
        )


SLACK_POST = NodeType(
    name="slack.post",
    family="messaging",
    summary="Post a message to Slack: an incoming webhook, or chat.postMessage with a bot token.",
    with_schema=obj(
        {
            "webhook_url": NON_EMPTY,
            "token": NON_EMPTY,
            "channel": NON_EMPTY,
            "text": STRING,
            "blocks": {"type": "array", "items": {"type": "object"}},
            "thread_ts": STRING,
        },
        "text",
    ),
    output_schema=obj({"ok": {"type": "boolean"}, "ts": STRING, "channel": STRING}, "ok"),
    capabilities=frozenset({"net", "secrets"}),
    requires=_webhook_requires,
    cost=flat_cost(0.05, "flat: 0.05 C-ION per message"),
    check=_slack_check,
    example={"webhook_url": "{{ secrets.slack_webhook }}", "text": "Deployed"},
)


def _subject_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    subject = with_.get("subject")
    if isinstance(subject, str) and not has_template(subject) and not PUBLISH_SUBJECT.match(subject):
        yield Finding(
            ("subject",),
            "node.with_invalid",
            f"{subject!r} is not a subject you can publish to",
            "use dot-separated tokens without spaces or wildcards (* and > are for subscribers), e.g. orders.created",
        )


EVENT_PUBLISH = NodeType(
    name="event.publish",
    family="messaging",
    summary="Publish an event to a NATS subject (the in-process bus when embedded); event triggers receive it.",
    with_schema=obj({"subject": NON_EMPTY, "data": ANY}, "subject"),
    output_schema=obj({"subject": STRING, "sequence": {"type": ["integer", "null"]}}, "subject"),
    capabilities=frozenset({"bus"}),
    cost=flat_cost(0.01, "flat: 0.01 C-ION per event"),
    check=_subject_check,
    example={"subject": "orders.digest.ready", "data": {"count": 3}},
)

FLOW_CALL = NodeType(
    name="flow.call",
    family="messaging",
    summary="Run another flow (one with a `flow` trigger) as a sub-flow; the parent waits for its outputs.",
    with_schema=obj(
        {
            "flow": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
            "version": STRING,
            "input": {"type": "object"},
            "wait": {"type": "boolean", "default": True},
        },
        "flow",
    ),
    output_schema=obj({"run_id": STRING, "status": STRING, "outputs": {"type": "object"}}, "run_id", "status"),
    capabilities=frozenset({"flows"}),
    cost=flat_cost(0.01, "flat: 0.01 C-ION, plus the called flow's own cost"),
    example={"flow": "send-digest", "input": {"days": 7}},
)

TYPES = [EMAIL_SEND, DISCORD_POST, SLACK_POST, EVENT_PUBLISH, FLOW_CALL]
