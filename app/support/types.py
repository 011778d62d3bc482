"""GraphQL types for support lookups."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.graphql.common import Money, utc
from app.orders.models import OrderStatus
from app.orders.types import OrderType
from app.security import codes
from app.support.search import OrderSummary


@strawberry.type(description="The customer behind an order, for support agents only.")
class SupportCustomer:
    email: str
    name: str


@strawberry.type(description="An order as a support agent sees it. Payment stays masked.")
class SupportOrder:
    order: OrderType
    customer: SupportCustomer


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
        return utc(self.row.placed_at)

    @strawberry.field
    def total(self) -> Money:
        return Money(amount=self.row.total_minor, currency=self.row.currency)

    @strawberry.field(description="Units ordered, all lines together.")
    def item_count(self) -> int:
        return self.row.item_count
