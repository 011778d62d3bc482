"""GraphQL types shared by every domain: money, page info, time conversion."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry


@strawberry.type(description="An amount in minor units (cents) with its ISO 4217 currency.")
class Money:
    amount: int = strawberry.field(description="Minor units, e.g. 1299 for 12.99.")
    currency: str


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


def utc(value: datetime | None) -> datetime | None:
    """Stored times are naive UTC; the API always says so (ISO-8601 with +00:00)."""
    return None if value is None else value.replace(tzinfo=UTC)
