"""Table: the audit log. Append-only from the API: no mutation edits or deletes an entry."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index
from sqlmodel import Field, SQLModel

from app.db import utcnow


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entries"
    __table_args__ = (Index("ix_audit_entries_created_at", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=32, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    actor_user_id: int | None = Field(default=None, foreign_key="users.id", index=True)
    actor_role: str = Field(max_length=16)
    action: str = Field(max_length=40, index=True)
    order_id: int | None = Field(default=None, foreign_key="orders.id", index=True)
    masked_code: str | None = Field(default=None, max_length=19)
    outcome: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    client_ip: str | None = Field(default=None, max_length=64)
    # Who the entry is about when that is not an order: a staff account an admin changed,
    # or a searched customer email, masked (app/support/search.py).
    subject: str | None = Field(default=None, max_length=254)
