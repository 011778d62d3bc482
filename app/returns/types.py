"""GraphQL types of returns and of the order timeline. Every field is listed explicitly;
internal ids and who did what (staff identities) stay private."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.graphql.common import Money, PageInfo, utc
from app.graphql.context import Context, Info
from app.graphql.errors import UserError
from app.notifications.templates import format_money
from app.orders.models import Order as OrderRow
from app.returns.loaders import ReturnLinesByReturnIdLoader, ReturnsByOrderIdLoader
from app.returns.models import ReturnReason as ReturnReasonEnum
from app.returns.models import ReturnRequest as ReturnRequestRow
from app.returns.models import ReturnStatus as ReturnStatusEnum
from app.returns.rules import Ineligibility
from app.returns.service import EligibilityView, EligibleLine, ReturnedLine, ReturnView
from app.returns.timeline import TimelineEntry, TimelineKind, build_timeline
from app.security import codes
from app.shipments.loaders import ShipmentsByOrderIdLoader

strawberry.enum(ReturnStatusEnum, name="ReturnStatus")
strawberry.enum(ReturnReasonEnum, name="ReturnReason")
strawberry.enum(
    Ineligibility,
    name="ReturnIneligibility",
    description="Why no unit of a line can be returned.",
)
strawberry.enum(TimelineKind, name="TimelineEventKind")


@strawberry.type(name="ReturnLine")
class ReturnLineType:
    row: strawberry.Private[ReturnedLine]
    currency: strawberry.Private[str]

    @strawberry.field
    def sku(self) -> str:
        return self.row.sku

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field(description="Units asked to return.")
    def quantity(self) -> int:
        return self.row.quantity

    @strawberry.field(description="Units that came back (null until the return is received).")
    def received_quantity(self) -> int | None:
        return self.row.received_quantity

    @strawberry.field
    def unit_price(self) -> Money:
        return Money(amount=self.row.unit_price_minor, currency=self.currency)


@strawberry.type(
    name="ReturnRequest",
    description="A return: its RMA code, where it stands, its items and its refund.",
)
class ReturnRequestType:
    row: strawberry.Private[ReturnRequestRow]
    canonical_order_code: strawberry.Private[str]
    preloaded_lines: strawberry.Private[list[ReturnedLine] | None] = None

    @staticmethod
    def of(view: ReturnView) -> ReturnRequestType:
        return ReturnRequestType(
            row=view.request, canonical_order_code=view.order_code, preloaded_lines=view.lines
        )

    @strawberry.field(description="The return's own code (RMA), as XXXX-XXXX-XXXX-XXXX.")
    def rma(self) -> str:
        return codes.display(self.row.rma_code)

    @strawberry.field(description="The code of the order the items come from.")
    def order_code(self) -> str:
        return codes.display(self.canonical_order_code)

    @strawberry.field
    def status(self) -> ReturnStatusEnum:
        return ReturnStatusEnum(self.row.status)

    @strawberry.field
    def reason(self) -> ReturnReasonEnum:
        return ReturnReasonEnum(self.row.reason)

    @strawberry.field
    def comment(self) -> str:
        return self.row.comment

    @strawberry.field(description="Why the return was rejected (REJECTED only).")
    def rejection_reason(self) -> str | None:
        return self.row.rejection_reason

    @strawberry.field
    async def lines(self, info: Info) -> list[ReturnLineType]:
        rows = self.preloaded_lines
        if rows is None:
            assert self.row.id is not None
            rows = await ReturnLinesByReturnIdLoader.of(info.context).load(self.row.id)
        return [ReturnLineType(row=row, currency=self.row.currency) for row in rows]

    @strawberry.field(description="The amount refunded (null until REFUNDED).")
    def refund(self) -> Money | None:
        if self.row.status != ReturnStatusEnum.REFUNDED.value or self.row.refund_minor is None:
            return None
        return Money(amount=self.row.refund_minor, currency=self.row.currency)

    @strawberry.field
    def requested_at(self) -> datetime:
        return utc(self.row.requested_at)

    @strawberry.field
    def approved_at(self) -> datetime | None:
        return utc(self.row.approved_at)

    @strawberry.field
    def rejected_at(self) -> datetime | None:
        return utc(self.row.rejected_at)

    @strawberry.field
    def received_at(self) -> datetime | None:
        return utc(self.row.received_at)

    @strawberry.field
    def refunded_at(self) -> datetime | None:
        return utc(self.row.refunded_at)


@strawberry.type(name="ReturnableLine")
class ReturnableLineType:
    row: strawberry.Private[EligibleLine]
    currency: strawberry.Private[str]

    @strawberry.field
    def sku(self) -> str:
        return self.row.sku

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def unit_price(self) -> Money:
        return Money(amount=self.row.unit_price_minor, currency=self.currency)

    @strawberry.field
    def ordered_quantity(self) -> int:
        return self.row.eligibility.ordered

    @strawberry.field(description="Units in delivered parcels.")
    def delivered_quantity(self) -> int:
        return self.row.eligibility.delivered

    @strawberry.field(description="Units already returned or in an open return request.")
    def returned_quantity(self) -> int:
        return self.row.eligibility.committed

    @strawberry.field(description="Units that can be returned now.")
    def returnable_quantity(self) -> int:
        return self.row.eligibility.returnable

    @strawberry.field(description="When the return window of the returnable units closes.")
    def returnable_until(self) -> datetime | None:
        return utc(self.row.eligibility.returnable_until)

    @strawberry.field(description="Why nothing can be returned (null when something can).")
    def reason(self) -> Ineligibility | None:
        return self.row.eligibility.reason


@strawberry.type(name="ReturnEligibility")
class ReturnEligibilityType:
    view: strawberry.Private[EligibilityView]

    @strawberry.field
    def order_code(self) -> str:
        return codes.display(self.view.order.code)

    @strawberry.field(description="Days from a parcel's delivery during which it may be returned.")
    def window_days(self) -> int:
        return self.view.window_days

    @strawberry.field(description="True when at least one unit can be returned now.")
    def can_return(self) -> bool:
        return any(line.eligibility.returnable > 0 for line in self.view.lines)

    @strawberry.field
    def lines(self) -> list[ReturnableLineType]:
        return [
            ReturnableLineType(row=line, currency=self.view.order.currency)
            for line in self.view.lines
        ]


_LABELS = {
    TimelineKind.PLACED: "Order placed",
    TimelineKind.PAID: "Payment received",
    TimelineKind.SHIPPED: "Shipped",
    TimelineKind.DELIVERED: "Delivered",
    TimelineKind.CANCELLED: "Order cancelled",
    TimelineKind.RETURN_REQUESTED: "Return requested",
    TimelineKind.RETURN_APPROVED: "Return approved",
    TimelineKind.RETURN_REJECTED: "Return rejected",
    TimelineKind.RETURN_RECEIVED: "Return received",
    TimelineKind.REFUNDED: "Refund issued",
}


@strawberry.type(
    name="TimelineEvent",
    description="One step in the life of an order, as its owner may see it.",
)
class TimelineEventType:
    entry: strawberry.Private[TimelineEntry]

    @strawberry.field
    def kind(self) -> TimelineKind:
        return self.entry.kind

    @strawberry.field
    def at(self) -> datetime:
        return utc(self.entry.at)

    @strawberry.field(description="The step in words, e.g. 'Shipped with DHL'.")
    def description(self) -> str:
        e = self.entry
        text = _LABELS[e.kind]
        if e.carrier:
            text += f" with {e.carrier} ({e.tracking_number})"
        if e.amount_minor is not None:
            text += f": {format_money(e.amount_minor, e.currency)}"
        if e.rma_code:
            text += f" (return {codes.display(e.rma_code)})"
        return text

    @strawberry.field(description="Payment and refunds.")
    def amount(self) -> Money | None:
        if self.entry.amount_minor is None:
            return None
        return Money(amount=self.entry.amount_minor, currency=self.entry.currency)

    @strawberry.field(description="The return this step belongs to.")
    def rma(self) -> str | None:
        return codes.display(self.entry.rma_code) if self.entry.rma_code else None

    @strawberry.field
    def carrier(self) -> str | None:
        return self.entry.carrier

    @strawberry.field
    def tracking_number(self) -> str | None:
        return self.entry.tracking_number


async def returns_of(context: Context, order: OrderRow) -> list[ReturnRequestType]:
    """An order's returns, oldest first, batched across every order in the response."""
    assert order.id is not None
    rows = await ReturnsByOrderIdLoader.of(context).load(order.id)
    return [ReturnRequestType(row=row, canonical_order_code=order.code) for row in rows]


async def timeline_of(context: Context, order: OrderRow) -> list[TimelineEventType]:
    """Derived from the order, its shipments and its returns: two batched statements for
    any number of orders in the response."""
    assert order.id is not None
    # both loads join their batches before either is awaited
    shipments_loaded = ShipmentsByOrderIdLoader.of(context).load(order.id)
    returns_loaded = ReturnsByOrderIdLoader.of(context).load(order.id)
    shipments, returns = await shipments_loaded, await returns_loaded
    return [TimelineEventType(entry=e) for e in build_timeline(order, shipments, returns)]


@strawberry.input
class ReturnLineInput:
    sku: str
    quantity: int


@strawberry.type
class ReturnRequestPayload:
    return_request: ReturnRequestType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ReturnRequestEdge:
    cursor: str
    node: ReturnRequestType


@strawberry.type
class ReturnRequestConnection:
    edges: list[ReturnRequestEdge]
    page_info: PageInfo
