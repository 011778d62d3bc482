"""Table: the transactional outbox of emails, written in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Text
from sqlmodel import Column, Field, SQLModel

from app.db import utcnow


class OutboxEmail(SQLModel, table=True):
    __tablename__ = "outbox_emails"
    __table_args__ = (Index("ix_outbox_emails_due", "sent_at", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=120, unique=True)  # also the Message-ID
    kind: str = Field(max_length=40)
    recipient: str = Field(max_length=254)
    subject: str = Field(max_length=200)
    body_text: str = Field(sa_column=Column(Text, nullable=False))
    # What the text was rendered from: the sender renders the HTML part (and the shop's
    # frame around both parts) from the same template and data. None on rows queued before
    # emails had an HTML part: their HTML part is the text, escaped.
    template: str | None = Field(default=None, max_length=60)
    template_data: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    claimed_until: datetime | None = Field(default=None)
    sent_at: datetime | None = Field(default=None)
    failed_at: datetime | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=500)


class NotificationPreference(SQLModel, table=True):
    """A customer's choice about the optional emails. No row: the defaults (all on)."""

    __tablename__ = "notification_preferences"

    user_id: int = Field(foreign_key="users.id", primary_key=True)
    milestone_emails: bool = Field(default=True)
    updated_at: datetime = Field(default_factory=utcnow)


class UsedUnsubscribeToken(SQLModel, table=True):
    """An unsubscribe token that has been used (its SHA-256): each works once."""

    __tablename__ = "used_unsubscribe_tokens"

    token_hash: str = Field(max_length=64, primary_key=True)
    used_at: datetime = Field(default_factory=utcnow)
