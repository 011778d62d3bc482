"""supportOrder(code, reason): SUPPORT and ADMIN, audited, rate-limited per agent."""

from __future__ import annotations

import strawberry

from app.graphql.context import Info
from app.orders.types import OrderType
from app.support.types import SupportCustomer, SupportOrder, SupportOrderSummary


@strawberry.type
class SupportQuery:
    @strawberry.field(
        description=(
            "Look an order up by the code a customer reads out. SUPPORT and ADMIN only; "
            "`reason` (a ticket reference) is required; every call is written to the audit "
            "log, found or not."
        )
    )
    async def support_order(self, info: Info, code: str, reason: str) -> SupportOrder | None:
        ctx = info.context
        view = await ctx.services.support.lookup(await ctx.viewer(), code, reason, ctx.client_ip)
        return SupportOrder(
            order=OrderType(row=view.order),
            customer=SupportCustomer(email=view.customer_email, name=view.customer_name),
        )


@strawberry.type
class SupportSearchQuery:
    @strawberry.field(
        description=(
            "A customer's recent orders by their email, newest first, for a caller who lost "
            "the code. SUPPORT and ADMIN only; `reason` (a ticket reference) is required; "
            "every call is audited. An unknown email and a customer with no orders both "
            "answer an empty list, and both count as a failed lookup of the agent. "
            "`first`: default 20, at most 50."
        )
    )
    async def support_search(
        self, info: Info, customer_email: str, reason: str, first: int | None = None
    ) -> list[SupportOrderSummary]:
        ctx = info.context
        found = await ctx.services.support_search.by_email(
            await ctx.viewer(), customer_email, reason, ctx.client_ip, first
        )
        return [SupportOrderSummary(row=row) for row in found]
