"""`email.send` against a real SMTP server on loopback (aiosmtpd), plain text and HTML."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from engine.core.state import StepKey
from engine.steps.call import StepCall, StepFailure
from engine.steps.email import SmtpSettings, send
from tests.services import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.endswith("@blocked.example"):
            return "550 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, str]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, f"smtp+plain://127.0.0.1:{port}"
    finally:
        controller.stop()


def call(with_: dict[str, Any]) -> StepCall:
    return StepCall(StepKey("mail"), 1, "email.send", with_)


def test_plain_and_html_mail_reaches_every_recipient(smtp: tuple[Inbox, str]) -> None:
    inbox, url = smtp
    out = send(
        call(
            {
                "to": ["ana@example.com", "rui@example.com"],
                "cc": "boss@example.com",
                "bcc": ["audit@example.com"],
                "from": "shop@example.com",
                "subject": "Daily digest",
                "body": "3 orders",
                "html": "<p>3 orders</p>",
            }
        ),
        SmtpSettings(url),
    )
    assert out["accepted"] == ["ana@example.com", "rui@example.com", "boss@example.com", "audit@example.com"]
    assert out["message_id"].endswith("@example.com>")
    sender, recipients, raw = inbox.messages[0]
    assert sender == "shop@example.com" and len(recipients) == 4
    message = message_from_bytes(raw)
    assert message["Subject"] == "Daily digest" and "Bcc" not in message and message["Cc"] == "boss@example.com"
    parts = {part.get_content_type(): part.get_payload(decode=True) for part in message.walk()}
    text, html = parts["text/plain"], parts["text/html"]
    assert isinstance(text, bytes) and isinstance(html, bytes)  # decoded leaf parts, not nested messages
    assert text.strip() == b"3 orders" and html.strip() == b"<p>3 orders</p>"


def test_refusals_and_missing_configuration_say_what_to_do(smtp: tuple[Inbox, str]) -> None:
    _, url = smtp
    with pytest.raises(StepFailure, match="refused every recipient") as e:
        send(call({"to": "x@blocked.example", "subject": "s", "body": "b"}), SmtpSettings(url))
    assert e.value.code == "email.refused" and not e.value.retryable
    with pytest.raises(StepFailure, match="no SMTP server is configured") as e:
        send(call({"to": "a@example.com", "subject": "s", "body": "b"}), SmtpSettings(None))
    assert "IONFLUX_SMTP_URL" in e.value.hint
    closed = f"smtp+plain://127.0.0.1:{free_port()}"
    with pytest.raises(StepFailure) as e:
        send(call({"to": "a@example.com", "subject": "s", "body": "b"}), SmtpSettings(closed, timeout_seconds=2))
    assert e.value.code == "email.connection_failed" and e.value.retryable
