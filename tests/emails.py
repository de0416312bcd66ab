"""Builders for the test suite's own small emails (written here, not copied)."""

from __future__ import annotations


def make_email(
    *,
    sender: str = "Alice Example <alice@corp.example>",
    to: str = "bob@corp.example",
    subject: str = "Quarterly planning notes",
    body: str = "Hi Bob,\nthe notes are attached to the wiki page.\nAlice\n",
    date: str = "Tue, 03 Mar 2026 10:15:00 +0000",
    message_id: str | None = "<20260303101500.1234@corp.example>",
    auth: str | None = "mx.mailscore.example; spf=pass smtp.mailfrom=corp.example; dkim=pass header.d=corp.example; dmarc=pass header.from=corp.example",
    reply_to: str | None = None,
    content_type: str = "text/plain; charset=utf-8",
    extra: str = "",
    received: bool = True,
) -> bytes:
    lines = []
    if received:
        lines.append(
            "Received: from mail.corp.example (mail.corp.example [198.51.100.10])\n"
            "\tby mx.mailscore.example with ESMTPS id abc123\n"
            "\tfor <bob@corp.example>; Tue, 03 Mar 2026 10:15:02 +0000"
        )
    if auth is not None:
        lines.append(f"Authentication-Results: {auth}")
    lines.append(f"From: {sender}")
    lines.append(f"To: {to}")
    if reply_to:
        lines.append(f"Reply-To: {reply_to}")
    lines.append(f"Subject: {subject}")
    lines.append(f"Date: {date}")
    if message_id is not None:
        lines.append(f"Message-ID: {message_id}")
    lines.append("MIME-Version: 1.0")
    lines.append(f"Content-Type: {content_type}")
    if extra:
        lines.append(extra.rstrip("\n"))
    return ("\n".join(lines) + "\n\n" + body).encode("utf-8")


PHISH = make_email(
    sender='"Corp IT Security" <it-support@corp-example-login.example.net>',
    reply_to="helpdesk@mailbox.example.com",
    subject="URGENT: your mailbox will be suspended",
    message_id="<x9@bulk-sender.example.com>",
    auth="mx.mailscore.example; spf=fail smtp.mailfrom=corp-example-login.example.net; dkim=none; dmarc=fail header.from=corp-example-login.example.net",
    content_type="text/html; charset=utf-8",
    body=(
        "<p>Your password expires today. Verify your account immediately or it will be locked.</p>"
        '<p><a href="http://203.0.113.9/owa/login.php">https://mail.corp.example/owa</a></p>'
        '<form action="http://203.0.113.9/collect"><input name="password"></form>'
    ),
)
