"""GraphQL types shared by every domain: money, page info, time conversion, and what a
query selects below a field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, overload

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionNode,
)


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


def fields_at(info: strawberry.Info[Any, Any], path: Sequence[str]) -> set[str]:
    """The names of the fields selected at `path` below the field `info` resolves (its own
    name first), through fragments, whatever their conditions: a resolver that fetches
    what its children will ask for (one statement for a page, not a loader round per item)
    asks this, and an extra name only costs an unused statement.

    Read from the document's nodes (graphql-core's ResolveInfo, or a plan's _RawInfo:
    `field_nodes` and `fragments`), not from strawberry's `info.selected_fields`, which
    converts the whole selection — every argument and directive — on every request: 3 %
    of a history page's time for three names."""
    raw = info._raw_info
    return _names_at(raw.field_nodes, raw.fragments, tuple(path))


def _names_at(
    selections: Iterable[SelectionNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    path: tuple[str, ...],
) -> set[str]:
    found: set[str] = set()
    for selection in selections:
        if isinstance(selection, FieldNode):
            name = selection.name.value
            if not path:
                found.add(name)
            elif name == path[0] and selection.selection_set is not None:
                found |= _names_at(selection.selection_set.selections, fragments, path[1:])
        elif isinstance(selection, InlineFragmentNode):
            found |= _names_at(selection.selection_set.selections, fragments, path)
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                found |= _names_at(fragment.selection_set.selections, fragments, path)
    return found
