"""Returns: returnEligibility, requestReturn, returnRequest (customers; staff read) and
approveReturn, rejectReturn, receiveReturn, refundReturn (staff). Resolvers translate
GraphQL input to primitives and call the service; they never commit."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.graphql.context import Info
from app.graphql.errors import run_mutation
from app.returns.inputs import ReturnLineRequest
from app.returns.models import ReturnReason as ReturnReasonEnum
from app.returns.service import ReturnView
from app.returns.types import (
    ReturnEligibilityType,
    ReturnLineInput,
    ReturnRequestPayload,
    ReturnRequestType,
)


def _lines(lines: list[ReturnLineInput]) -> list[ReturnLineRequest]:
    return [ReturnLineRequest(sku=line.sku, quantity=line.quantity) for line in lines]


def _payload(work: ReturnView) -> ReturnRequestPayload:
    return ReturnRequestPayload(return_request=ReturnRequestType.of(work))


@strawberry.type
class ReturnsQuery:
    @strawberry.field(
        description=(
            "Per line of one of your orders: how many units can be returned now and, if "
            "none, why (not delivered yet, window closed, already returned). Another "
            "customer's code answers like an unknown one (ORDER_NOT_FOUND). Rate-limited."
        )
    )
    def return_eligibility(self, info: Info, code: str) -> ReturnEligibilityType | None:
        ctx = info.context
        return ReturnEligibilityType(
            view=ctx.services.returns.eligibility(ctx.viewer, code, ctx.client_ip)
        )

    @strawberry.field(
        description=(
            "A return by its RMA code: yours, or any for staff (SUPPORT, WAREHOUSE, ADMIN). "
            "Another customer's RMA answers like an unknown one (ORDER_NOT_FOUND). "
            "Rate-limited like every code lookup."
        )
    )
    def return_request(self, info: Info, rma: str) -> ReturnRequestType | None:
        ctx = info.context
        return ReturnRequestType.of(ctx.services.returns.get_return(ctx.viewer, rma, ctx.client_ip))


@strawberry.type
class ReturnsMutation:
    @strawberry.mutation(
        description=(
            "Ask to return delivered items of your order, within the return window, no more "
            "than were delivered minus what is returned or being returned. Creates a return "
            "(REQUESTED) with its own RMA code and emails the return instructions."
        )
    )
    def request_return(
        self,
        info: Info,
        code: str,
        lines: list[ReturnLineInput],
        reason: ReturnReasonEnum,
        comment: Annotated[
            str | None, strawberry.argument(description="Anything we should know (optional).")
        ] = None,
    ) -> ReturnRequestPayload:
        ctx = info.context
        return run_mutation(
            lambda: _payload(
                ctx.services.returns.request_return(
                    ctx.viewer, code, ctx.client_ip, _lines(lines), reason.value, comment
                )
            ),
            lambda errors: ReturnRequestPayload(user_errors=errors),
        )

    @strawberry.mutation(description="Approve a requested return (SUPPORT, ADMIN).")
    def approve_return(self, info: Info, rma: str) -> ReturnRequestPayload:
        ctx = info.context
        return run_mutation(
            lambda: _payload(ctx.services.returns.approve(ctx.viewer, rma, ctx.client_ip)),
            lambda errors: ReturnRequestPayload(user_errors=errors),
        )

    @strawberry.mutation(
        description=(
            "Reject a requested or approved return (SUPPORT, ADMIN); `reason` is emailed to "
            "the customer."
        )
    )
    def reject_return(self, info: Info, rma: str, reason: str) -> ReturnRequestPayload:
        ctx = info.context
        return run_mutation(
            lambda: _payload(ctx.services.returns.reject(ctx.viewer, rma, ctx.client_ip, reason)),
            lambda errors: ReturnRequestPayload(user_errors=errors),
        )

    @strawberry.mutation(
        description=(
            "Record what came back of an approved return: units received per SKU (a SKU "
            "left out came back empty). The order becomes PARTIALLY_RETURNED or RETURNED. "
            "WAREHOUSE, ADMIN."
        )
    )
    def receive_return(
        self, info: Info, rma: str, lines: list[ReturnLineInput]
    ) -> ReturnRequestPayload:
        ctx = info.context
        return run_mutation(
            lambda: _payload(
                ctx.services.returns.receive(ctx.viewer, rma, ctx.client_ip, _lines(lines))
            ),
            lambda errors: ReturnRequestPayload(user_errors=errors),
        )

    @strawberry.mutation(
        description=(
            "Refund a received return through the payment provider (ADMIN): unit price x "
            "units received, plus the shipping fee when the whole order has come back; "
            "never more than paid minus earlier refunds. Repeating it refunds once."
        )
    )
    def refund_return(self, info: Info, rma: str) -> ReturnRequestPayload:
        ctx = info.context
        return run_mutation(
            lambda: _payload(ctx.services.returns.refund(ctx.viewer, rma, ctx.client_ip)),
            lambda errors: ReturnRequestPayload(user_errors=errors),
        )
