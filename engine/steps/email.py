"""``email.send`` over the operator's SMTP server: plain text and/or HTML, TLS or STARTTLS, optional login.

The server is an operator setting (``IONFLUX_SMTP_URL``), never a flow's: ``smtp://user:password@host:587`` uses
STARTTLS, ``smtps://…:465`` implicit TLS, ``smtp+plain://host:25`` no TLS (a local relay, or tests). A message that
the server refuses fails the step with the server's answer; a connection problem is retryable.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from engine.steps.call import StepCall, StepFailure


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    url: str | None = None
    sender: str = "ionflux@localhost"
    timeout_seconds: float = 30.0


def _addresses(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def send(call: StepCall, settings: SmtpSettings) -> Any:
    if not settings.url:
        raise StepFailure(
            "email.not_configured",
            "no SMTP server is configured for this installation",
            hint="set IONFLUX_SMTP_URL, e.g. smtp://user:password@smtp.example.com:587",
        )
    with_ = call.with_
    to, cc, bcc = _addresses(with_.get("to")), _addresses(with_.get("cc")), _addresses(with_.get("bcc"))
    message = EmailMessage()
    message["From"] = str(with_.get("from") or settings.sender)
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if with_.get("reply_to"):
        message["Reply-To"] = str(with_["reply_to"])
    message["Subject"] = str(with_.get("subject", ""))
    domain = message["From"].rsplit("@", 1)[-1].strip("> ") or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(str(with_.get("body") or ""))
    if with_.get("html"):
        message.add_alternative(str(with_["html"]), subtype="html")
    url = urlsplit(settings.url)
    host, port = url.hostname or "localhost", url.port
    try:
        client: smtplib.SMTP
        if url.scheme == "smtps":
            client = smtplib.SMTP_SSL(
                host, port or 465, timeout=settings.timeout_seconds, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, port or 587, timeout=settings.timeout_seconds)
        with client:
            if url.scheme == "smtp":
                client.starttls(context=ssl.create_default_context())
            if url.username:
                client.login(unquote(url.username), unquote(url.password or ""))
            refused = client.send_message(message, to_addrs=[*to, *cc, *bcc])
    except smtplib.SMTPRecipientsRefused as e:
        raise StepFailure("email.refused", f"the SMTP server refused every recipient: {sorted(e.recipients)}") from None
    except smtplib.SMTPResponseException as e:
        text = e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        raise StepFailure(
            "email.refused", f"the SMTP server answered {e.smtp_code}: {text}", retryable=400 <= e.smtp_code < 500
        ) from None
    except (OSError, smtplib.SMTPException) as e:
        raise StepFailure(
            "email.connection_failed", f"SMTP {host}:{port}: {type(e).__name__}: {e}", retryable=True
        ) from None
    accepted = [a for a in (*to, *cc, *bcc) if a not in refused]
    return {"message_id": str(message["Message-ID"]), "accepted": accepted}


def executor(settings: SmtpSettings) -> Callable[[StepCall], Any]:
    def run(call: StepCall) -> Any:
        return send(call, settings)

    return run
