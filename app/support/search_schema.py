"""supportSearch(customerEmail, reason): SUPPORT and ADMIN, audited, the agent's budgets."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.graphql.common import Money, utc
from app.graphql.context import Info
from app.orders.models import OrderStatus
from app.security import codes
from app.support.search import OrderSummary


@strawberry.type(description="One order of a customer, as a support agent's search lists it.")
class SupportOrderSummary:
    row: strawberry.Private[OrderSummary]

    @strawberry.field(description="As XXXX-XXXX-XXXX-XXXX; open it with supportOrder.")
    def code(self) -> str:
        return codes.display(self.row.code)

    @strawberry.field
    def status(self) -> OrderStatus:
        return OrderStatus(self.row.status)

    @strawberry.field
    def placed_at(self) -> datetime:
        return utc(self.row.placed_at)  # type: ignore[return-value]

    @strawberry.field
    def total(self) -> Money:
        return Money(amount=self.row.total_minor, currency=self.row.currency)

    @strawberry.field(description="Units ordered, all lines together.")
    def item_count(self) -> int:
        return self.row.item_count


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
