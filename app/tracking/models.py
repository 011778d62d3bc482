"""Table: shareable tracking links. The token is a bearer secret: stored as a digest."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.db import utcnow


class TrackingLink(SQLModel, table=True):
    __tablename__ = "tracking_links"

    id: int | None = Field(default=None, primary_key=True)
    token_digest: str = Field(max_length=64, unique=True, index=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    created_by: int = Field(foreign_key="users.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = Field(default=None)
