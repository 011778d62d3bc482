"""GraphQL types shared by every domain: money, page info, time conversion."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

import strawberry


@strawberry.type(description="An amount in minor units (cents) with its ISO 4217 currency.")
class Money:
    amount: int = strawberry.field(description="Minor units, e.g. 1299 for 12.99.")
    currency: str


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
@overload
def utc(value: datetime | None) -> datetime | None: ...
def utc(value: datetime | None) -> datetime | None:
    """The API always answers in UTC (ISO-8601 with +00:00)."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
