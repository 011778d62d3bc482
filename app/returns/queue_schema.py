"""returnsQueue (SUPPORT, WAREHOUSE, ADMIN): returns waiting for approval or receipt."""

from __future__ import annotations

import strawberry

from app.graphql.common import PageInfo
from app.graphql.context import Info
from app.returns.models import ReturnStatus as ReturnStatusEnum
from app.returns.types import ReturnRequestType


@strawberry.type
class ReturnRequestEdge:
    cursor: str
    node: ReturnRequestType


@strawberry.type
class ReturnRequestConnection:
    edges: list[ReturnRequestEdge]
    page_info: PageInfo


@strawberry.type
class ReturnsQueueQuery:
    @strawberry.field(
        description=(
            "Returns for the returns desk, oldest first. `statuses` defaults to REQUESTED and "
            "APPROVED (waiting for a decision or for the parcel). SUPPORT, WAREHOUSE, ADMIN."
        )
    )
    async def returns_queue(
        self,
        info: Info,
        statuses: list[ReturnStatusEnum] | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ReturnRequestConnection:
        ctx = info.context
        page = await ctx.services.returns_queue.list(await ctx.viewer(), statuses, first, after)
        return ReturnRequestConnection(
            edges=[
                ReturnRequestEdge(
                    cursor=cursor, node=ReturnRequestType(row=ret, canonical_order_code=code)
                )
                for (ret, code), cursor in zip(page.returns, page.cursors, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )
