"""Ways to hand a finished email to the outside world: a real SMTP server, or a folder.

The outbox sender only knows the `MailTransport` protocol; `transport_from_settings` picks
SMTP when SMTP_HOST is set and the local folder otherwise (the embedded default).
"""

from __future__ import annotations

import hashlib
import json
import os
import string
import tempfile
from dataclasses import dataclass, field
from datetime import UTC
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol

import aiosmtplib
import anyio.to_thread

from app.notifications.models import OutboxEmail
from app.notifications.preferences import MILESTONE_KINDS, UnsubscribeLinks
from app.notifications.templates import Shop, email_parts
from app.settings import Settings

MESSAGE_ID_DOMAIN = "orders-api"

# Characters that may stand in the left part of a Message-ID as they are (RFC 5322 atext,
# minus "%" which is our escape character). Anything else is percent-encoded, which keeps
# the mapping one-to-one: two dedupe keys never share a Message-ID.
_ID_SAFE = frozenset(string.ascii_letters + string.digits + "!#$&'*+-/=?^_`{|}~")


class MailTransport(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver `message` or raise; a raise means "try again later"."""
        ...


def message_id(dedupe_key: str) -> str:
    """`<{kind}.{sha256 of the dedupe key}@orders-api>`.

    Stable for a given outbox row, so a resend after a lost acknowledgement carries the same
    Message-ID and receivers can recognise the duplicate. Hashed because dedupe keys hold
    order codes, and mail servers log Message-IDs (codes never go into logs, DESIGN §1.11).
    """
    kind = dedupe_key.split(".", 1)[0]
    safe_kind = "".join(ch for ch in kind if ch in _ID_SAFE and ch != ".")[:40] or "msg"
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]
    return f"<{safe_kind}.{digest}@{MESSAGE_ID_DOMAIN}>"


@dataclass(frozen=True)
class OneLineHeader:
    """A header written exactly as given, on one line (well under the 998 characters a line
    may have). The email package folds a long unbreakable value into RFC 2047 encoded words,
    and a `List-Unsubscribe` URI written that way is no link to a mail client. A value with a
    `name` is passed through by the policies as a header object (`header_store_parse`)."""

    name: str
    value: str

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self.value}{policy.linesep}"

    def __str__(self) -> str:
        return self.value


def unsubscribe_url(row: OutboxEmail, unsubscribe: UnsubscribeLinks | None) -> str | None:
    """The one-click unsubscribe link of a milestone email (None for every other kind):
    its token expires a fixed time after the email was queued, so a resend is the same."""
    if unsubscribe is None or row.kind not in MILESTONE_KINDS or not row.template_data:
        return None
    user = json.loads(row.template_data).get("unsubscribe_user")
    if not user:
        return None
    return unsubscribe.url(str(user), row.created_at)


def build_message(
    row: OutboxEmail,
    mail_from: str,
    shop: Shop | None = None,
    unsubscribe: UnsubscribeLinks | None = None,
) -> EmailMessage:
    """The email for an outbox row: `multipart/alternative`, a plain-text part then an HTML
    part, both from the row's template data, in `shop`'s frame. Deterministic: the same row
    and shop give the same bytes. A milestone email also carries its one-click unsubscribe
    link (RFC 8058), in both parts and in the `List-Unsubscribe` headers."""
    shop = shop or Shop()
    leave = unsubscribe_url(row, unsubscribe)
    text, html = email_parts(
        subject=row.subject,
        body_text=row.body_text,
        template=row.template,
        template_data=row.template_data,
        shop=shop,
        unsubscribe_url=leave,
    )
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = row.recipient
    message["Reply-To"] = shop.support_email
    message["Subject"] = row.subject
    # The time the email was queued (the event it reports), not the time of this attempt.
    message["Date"] = format_datetime(row.created_at.replace(tzinfo=UTC))
    message["Message-ID"] = message_id(row.dedupe_key)
    if leave is not None:
        message["List-Unsubscribe"] = OneLineHeader("List-Unsubscribe", f"<{leave}>")
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # Quoted-printable keeps the body 7-bit clean, so relays without 8BITMIME accept it too.
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    # A fixed boundary keeps the bytes the same on a resend. It cannot occur in the parts:
    # quoted-printable writes every "=" of the content as "=3D".
    digest = hashlib.sha256(row.dedupe_key.encode()).hexdigest()[:32]
    message.set_boundary(f"=_alt_{digest}")
    return message


class FileTransport:
    """Writes each email to `<directory>/<name from Message-ID>.eml` (development, demos).

    Idempotent: a message already written (same Message-ID) is not written again, so a
    resend leaves exactly one file.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"FileTransport({str(self.directory)!r})"

    async def send(self, message: EmailMessage) -> None:
        await anyio.to_thread.run_sync(self._write, message)

    def path_for(self, message: EmailMessage) -> Path:
        msg_id = message["Message-ID"]
        if not msg_id:
            raise ValueError("FileTransport needs a Message-ID to name the file")
        return self.directory / eml_filename(str(msg_id))

    def _write(self, message: EmailMessage) -> None:
        target = self.path_for(message)
        if target.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # Write aside then rename: a reader (or a crash) never sees half a file, and
        # os.replace over an existing file is atomic, so concurrent writers leave one file.
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(bytes(message))
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


def eml_filename(msg_id: str) -> str:
    """A file name that is safe on any file system and unique per Message-ID.

    The readable part is filtered and shortened, so a hash of the full Message-ID keeps
    names distinct; nothing in it can be a path separator or start a hidden file.
    """
    left = msg_id.strip().strip("<>").split("@", 1)[0]
    readable = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in left)
    readable = readable.lstrip(".")[:80] or "message"
    digest = hashlib.sha256(msg_id.encode()).hexdigest()[:16]
    return f"{readable}.{digest}.eml"


@dataclass(frozen=True)
class SmtpTransport:
    """Delivery through an SMTP server, one connection per message (aiosmtplib)."""

    host: str
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs or reprs
    starttls: bool = False
    timeout: float = 10

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            # The setting decides, not the server: aiosmtplib's default (None) would try
            # STARTTLS whenever it is advertised, whatever SMTP_STARTTLS says.
            start_tls=self.starttls,
            timeout=self.timeout,
        )


def transport_from_settings(settings: Settings) -> MailTransport:
    if settings.smtp_host:
        return SmtpTransport(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    return FileTransport(settings.mail_dir)
