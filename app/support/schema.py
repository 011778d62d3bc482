"""supportOrder(code, reason): SUPPORT and ADMIN, audited, rate-limited per agent."""

from __future__ import annotations

import strawberry

from app.graphql.context import Info
from app.orders.types import OrderType
from app.support.types import SupportCustomer, SupportOrder


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
