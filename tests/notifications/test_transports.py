"""Building messages and handing them over: to a folder (dev) or a real SMTP server."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime
from pathlib import Path

from app.notifications.models import OutboxEmail
from app.notifications.transports import (
    FileTransport,
    SmtpTransport,
    build_message,
    message_id,
    transport_from_settings,
)
from app.settings import Settings

from .conftest import MAIL_FROM, SmtpServer


def outbox_row(dedupe_key: str = "order-confirmation.ABCD2345EFGH6789") -> OutboxEmail:
    return OutboxEmail(
        id=1,
        dedupe_key=dedupe_key,
        kind="order_confirmation",
        recipient="ada@example.com",
        subject="Your order ABCD-2345-EFGH-6789 is confirmed",
        body_text="Hello Ada,\nPaid with VISA •••• 4242\n",
        created_at=datetime(2025, 6, 1, 12, 30, 0),
    )


def test_message_has_headers_and_a_stable_message_id() -> None:
    message = build_message(outbox_row(), MAIL_FROM)

    assert message["From"] == MAIL_FROM
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Your order ABCD-2345-EFGH-6789 is confirmed"
    assert message["Message-ID"] == message_id("order-confirmation.ABCD2345EFGH6789")
    # the order code in the dedupe key never reaches the header (mail servers log it)
    assert "ABCD2345EFGH6789" not in message["Message-ID"]
    assert message["Message-ID"].startswith("<order-confirmation.")
    assert message["Date"] == "Sun, 01 Jun 2025 12:30:00 +0000"
    # The stored text, then the shop's footer; an HTML part beside it (test_email_parts.py).
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert plain.get_content().startswith("Hello Ada,\nPaid with VISA •••• 4242\n")
    # Built twice (a resend), the email is byte for byte the same.
    assert bytes(message) == bytes(build_message(outbox_row(), MAIL_FROM))


def test_message_body_is_7bit_clean_for_any_relay() -> None:
    raw = bytes(build_message(outbox_row(), MAIL_FROM))

    assert raw.isascii()


def test_message_id_survives_keys_with_header_syntax_in_them() -> None:
    # The header parser would cut "<a:b@...>" at the colon; hashing keeps it whole.
    for key in ["return:RMA-1", "a b/c", ".lead..trail.", "ünï"]:
        message = build_message(outbox_row(key), MAIL_FROM)
        parsed = email.message_from_bytes(bytes(message), policy=email.policy.default)

        assert parsed["Message-ID"] == message_id(key)
        assert message_id(key).endswith("@orders-api>")
    assert message_id("a:b") != message_id("a%3Ab")


async def test_file_transport_writes_one_eml_per_message_even_if_sent_twice(
    tmp_path: Path,
) -> None:
    mail_dir = tmp_path / "mail"
    transport = FileTransport(mail_dir)
    first = build_message(outbox_row("order-confirmation.A"), MAIL_FROM)
    second = build_message(outbox_row("order-cancelled.A"), MAIL_FROM)

    await transport.send(first)
    await transport.send(first)
    await transport.send(second)

    files = sorted(mail_dir.iterdir())
    assert [f.suffix for f in files] == [".eml", ".eml"]  # no temporary files left behind
    ids = {
        str(email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Message-ID"])
        for f in files
    }
    assert ids == {message_id("order-confirmation.A"), message_id("order-cancelled.A")}


async def test_file_transport_keeps_hostile_keys_inside_its_folder(tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"

    await FileTransport(mail_dir).send(build_message(outbox_row("../../etc/passwd"), MAIL_FROM))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["mail"]
    [written] = mail_dir.iterdir()
    assert not written.name.startswith(".")
    assert written.name.endswith(".eml")


async def test_smtp_transport_delivers_to_a_real_server(running_smtp: SmtpServer) -> None:
    transport = SmtpTransport("127.0.0.1", running_smtp.port, None, None, False)

    await transport.send(build_message(outbox_row(), MAIL_FROM))

    [envelope] = running_smtp.mailbox.envelopes
    assert envelope.mail_from == "orders@shop.example"
    assert envelope.rcpt_tos == ["ada@example.com"]
    [received] = running_smtp.mailbox.messages
    # SMTP carries CRLF line ends; the text is otherwise unchanged (non-ASCII included).
    plain = received.get_body(preferencelist=("plain",))
    assert plain is not None
    text = plain.get_content().replace("\r\n", "\n")
    assert text.startswith("Hello Ada,\nPaid with VISA •••• 4242\n")


def test_settings_choose_smtp_when_a_host_is_set(tmp_path: Path) -> None:
    settings = Settings(
        smtp_host="mail.example",
        smtp_port=2525,
        smtp_username="shop",
        smtp_password="s3cret-password",
        smtp_starttls=True,
    )

    transport = transport_from_settings(settings)

    assert transport == SmtpTransport("mail.example", 2525, "shop", "s3cret-password", True)
    assert "s3cret-password" not in repr(transport)


def test_settings_fall_back_to_the_mail_folder(tmp_path: Path) -> None:
    transport = transport_from_settings(Settings(mail_dir=tmp_path / "outbox"))

    assert isinstance(transport, FileTransport)
    assert transport.directory == tmp_path / "outbox"
