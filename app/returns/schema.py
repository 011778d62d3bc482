"""Returns: returnEligibility, requestReturn, returnRequest (customers; staff read) and
approveReturn, rejectReturn, receiveReturn, refundReturn (staff). Resolvers translate
GraphQL input to primitives and call the service; they never commit."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.graphql.common import PageInfo
from app.graphql.context import Info
from app.graphql.errors import UserError, run_mutation
from app.returns.inputs import ReturnLineRequest
from app.returns.models import ReturnReason as ReturnReasonEnum
from app.returns.models import ReturnStatus as ReturnStatusEnum
from app.returns.service import ReturnView
from app.returns.types import (
    ReturnEligibilityType,
    ReturnLineInput,
    ReturnRequestConnection,
    ReturnRequestEdge,
    ReturnRequestPayload,
    ReturnRequestType,
)


def _lines(lines: list[ReturnLineInput]) -> list[ReturnLineRequest]:
    return [ReturnLineRequest(sku=line.sku, quantity=line.quantity) for line in lines]


def _payload(work: ReturnView) -> ReturnRequestPayload:
    return ReturnRequestPayload(return_request=ReturnRequestType.of(work))


def _failed(errors: list[UserError]) -> ReturnRequestPayload:
    return ReturnRequestPayload(user_errors=errors)


@strawberry.type
class ReturnsQuery:
    @strawberry.field(
        description=(
            "Per line of one of your orders: how many units can be returned now and, if "
            "none, why (not delivered yet, window closed, already returned). Another "
            "customer's code answers like an unknown one (ORDER_NOT_FOUND). Rate-limited."
        )
    )
    async def return_eligibility(self, info: Info, code: str) -> ReturnEligibilityType | None:
        ctx = info.context
        return ReturnEligibilityType(
            view=await ctx.services.returns.eligibility(await ctx.viewer(), code, ctx.client_ip)
        )

    @strawberry.field(
        description=(
            "A return by its RMA code: yours, or any for staff (SUPPORT, WAREHOUSE, ADMIN). "
            "Another customer's RMA answers like an unknown one (ORDER_NOT_FOUND). "
            "Rate-limited like every code lookup."
        )
    )
    async def return_request(self, info: Info, rma: str) -> ReturnRequestType | None:
        ctx = info.context
        return ReturnRequestType.of(
            await ctx.services.returns.get_return(await ctx.viewer(), rma, ctx.client_ip)
        )


@strawberry.type
class ReturnsMutation:
    @strawberry.mutation(
        description=(
            "Ask to return delivered items of your order, within the return window, no more "
            "than were delivered minus what is returned or being returned. Creates a return "
            "(REQUESTED) with its own RMA code and emails the return instructions. "
            "SUPPORT and ADMIN may ask for the customer, giving `supportReason` (the "
            "ticket): audited, rate-limited like supportOrder, the same rules and emails."
        )
    )
    async def request_return(
        self,
        info: Info,
        code: str,
        lines: list[ReturnLineInput],
        reason: ReturnReasonEnum,
        comment: Annotated[
            str | None, strawberry.argument(description="Anything we should know (optional).")
        ] = None,
        support_reason: Annotated[
            str | None,
            strawberry.argument(
                description="Staff acting for the customer (SUPPORT, ADMIN): the ticket. "
                "Required from them, refused from customers."
            ),
        ] = None,
    ) -> ReturnRequestPayload:
        ctx = info.context

        async def work() -> ReturnRequestPayload:
            return _payload(
                await ctx.services.staff_returns.request_return(
                    await ctx.viewer(),
                    code,
                    ctx.client_ip,
                    _lines(lines),
                    reason.value,
                    comment,
                    support_reason,
                )
            )

        return await run_mutation(work, _failed)

    @strawberry.mutation(description="Approve a requested return (SUPPORT, ADMIN).")
    async def approve_return(self, info: Info, rma: str) -> ReturnRequestPayload:
        ctx = info.context

        async def work() -> ReturnRequestPayload:
            return _payload(
                await ctx.services.returns.approve(await ctx.viewer(), rma, ctx.client_ip)
            )

        return await run_mutation(work, _failed)

    @strawberry.mutation(
        description=(
            "Reject a requested or approved return (SUPPORT, ADMIN); `reason` is emailed to "
            "the customer."
        )
    )
    async def reject_return(self, info: Info, rma: str, reason: str) -> ReturnRequestPayload:
        ctx = info.context

        async def work() -> ReturnRequestPayload:
            return _payload(
                await ctx.services.returns.reject(await ctx.viewer(), rma, ctx.client_ip, reason)
            )

        return await run_mutation(work, _failed)

    @strawberry.mutation(
        description=(
            "Record what came back of an approved return: units received per SKU (a SKU "
            "left out came back empty). The order becomes PARTIALLY_RETURNED or RETURNED. "
            "WAREHOUSE, ADMIN."
        )
    )
    async def receive_return(
        self, info: Info, rma: str, lines: list[ReturnLineInput]
    ) -> ReturnRequestPayload:
        ctx = info.context

        async def work() -> ReturnRequestPayload:
            return _payload(
                await ctx.services.returns.receive(
                    await ctx.viewer(), rma, ctx.client_ip, _lines(lines)
                )
            )

        return await run_mutation(work, _failed)

    @strawberry.mutation(
        description=(
            "Refund a received return through the payment provider (ADMIN): unit price x "
            "units received, plus the shipping fee when the whole order has come back; "
            "never more than paid minus earlier refunds. Repeating it refunds once."
        )
    )
    async def refund_return(self, info: Info, rma: str) -> ReturnRequestPayload:
        ctx = info.context

        async def work() -> ReturnRequestPayload:
            return _payload(
                await ctx.services.returns.refund(await ctx.viewer(), rma, ctx.client_ip)
            )

        return await run_mutation(work, _failed)


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
