"""Writing to the outbox: called inside the caller's transaction, so the email is queued
exactly when (and only when) the change it reports is committed."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.notifications.models import OutboxEmail


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
    """
    email = OutboxEmail(
        dedupe_key=dedupe_key,
        kind=kind,
        recipient=recipient,
        subject=subject[:200],
        body_text=body_text,
    )
    session.add(email)
    return email
