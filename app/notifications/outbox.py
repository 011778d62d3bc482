"""Writing to the outbox: called inside the caller's transaction, so the email is queued
exactly when (and only when) the change it reports is committed."""

from __future__ import annotations

import json

from sqlalchemy.ext.asyncio import AsyncSession

from app.notifications.models import OutboxEmail
from app.notifications.templates import RenderedText


def enqueue_email(
    session: AsyncSession,
    *,
    kind: str,
    recipient: str,
    subject: str,
    body_text: str,
    dedupe_key: str,
) -> OutboxEmail:
    """Add one email to the outbox in `session`'s transaction (the caller commits).

    `dedupe_key` is unique: it is the Message-ID, and a second enqueue with the same key
    inside a retried use case fails the transaction instead of queueing a duplicate.

    `body_text` comes from `templates.render`: the row keeps the template and data it was
    rendered from, and the sender renders the HTML part from them. A plain string (no
    template) is sent with its text, escaped, as the HTML part.
    """
    template = data = None
    if isinstance(body_text, RenderedText):
        template = body_text.template
        data = json.dumps(body_text.data, sort_keys=True)
    email = OutboxEmail(
        dedupe_key=dedupe_key,
        kind=kind,
        recipient=recipient,
        subject=subject[:200],
        body_text=str(body_text),
        template=template,
        template_data=data,
    )
    session.add(email)
    return email
