"""GraphQL types shared by every domain: money, page info, time conversion, and what a
query selects below a field."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import overload

import strawberry
from strawberry.types.nodes import SelectedField, Selection


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


def fields_at(selections: Sequence[Selection], path: Sequence[str]) -> set[str]:
    """The names of the fields selected at `path` below these selections (strawberry's
    `info.selected_fields`), through fragments, whatever their conditions: a resolver
    that fetches what its children will ask for (one statement for a page, not a loader
    round per item) asks this, and an extra name only costs an unused statement."""
    found: set[str] = set()
    for selection in selections:
        if not isinstance(selection, SelectedField):  # a fragment spread or inline fragment
            found |= fields_at(selection.selections, path)
        elif not path:
            found.add(selection.name)
        elif selection.name == path[0]:
            found |= fields_at(selection.selections, path[1:])
    return found
