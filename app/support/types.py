"""GraphQL types for support lookups."""

from __future__ import annotations

import strawberry

from app.orders.types import OrderType


@strawberry.type(description="The customer behind an order, for support agents only.")
class SupportCustomer:
    email: str
    name: str


@strawberry.type(description="An order as a support agent sees it. Payment stays masked.")
class SupportOrder:
    order: OrderType
    customer: SupportCustomer
