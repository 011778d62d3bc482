"""GraphQL types of orders. Every field is listed explicitly; internal ids never appear."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum

import strawberry

from app.graphql.common import Money, PageInfo, utc
from app.graphql.context import Info
from app.graphql.errors import UserError
from app.orders.checkout import CheckoutView, SummaryLine
from app.orders.loaders import OrderLinesByOrderIdLoader
from app.orders.models import CheckoutStatus as CheckoutStatusEnum
from app.orders.models import Order as OrderRow
from app.orders.models import OrderLine as OrderLineRow
from app.orders.models import OrderStatus as OrderStatusEnum
from app.returns.types import ReturnRequestType, TimelineEventType, returns_of, timeline_of
from app.security import codes
from app.shipments.models import Shipment as ShipmentRow
from app.shipments.types import ShipmentType, shipments_of

strawberry.enum(OrderStatusEnum, name="OrderStatus")  # registers the enum on the class


@strawberry.type(name="OrderLine")
class OrderLineType:
    row: strawberry.Private[OrderLineRow]
    currency: strawberry.Private[str]

    @strawberry.field
    def sku(self) -> str:
        return self.row.sku

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def quantity(self) -> int:
        return self.row.quantity

    @strawberry.field
    def unit_price(self) -> Money:
        return Money(amount=self.row.unit_price_minor, currency=self.currency)

    @strawberry.field
    def line_total(self) -> Money:
        return Money(amount=self.row.unit_price_minor * self.row.quantity, currency=self.currency)


@strawberry.type
class Address:
    name: str
    line1: str
    line2: str
    city: str
    postal_code: str
    country: str


@strawberry.type(description="Payment, always masked: brand and last four digits only.")
class PaymentSummary:
    brand: str
    last4: str


# The fields of Order answered from app/orders/history.py SUMMARY_COLUMNS alone: a history
# page that selects no other field of its orders reads only those columns
# (tests/api/test_my_orders.py compares such a page with a full read).
ORDER_SUMMARY_FIELDS = frozenset(
    {"__typename", "code", "status", "placedAt", "total", "lines", "shipments"}
)


@strawberry.type(name="Order")
class OrderType:
    row: strawberry.Private[OrderRow]
    preloaded_lines: strawberry.Private[list[OrderLineRow] | None] = None
    preloaded_shipments: strawberry.Private[list[ShipmentRow] | None] = None

    @strawberry.field(description="The order code, as XXXX-XXXX-XXXX-XXXX.")
    def code(self) -> str:
        return codes.display(self.row.code)

    @strawberry.field
    def status(self) -> OrderStatusEnum:
        return OrderStatusEnum(self.row.status)

    @strawberry.field
    def placed_at(self) -> datetime:
        return utc(self.row.placed_at)

    @strawberry.field
    def updated_at(self) -> datetime:
        return utc(self.row.updated_at)

    @strawberry.field
    def cancelled_at(self) -> datetime | None:
        return utc(self.row.cancelled_at)

    @strawberry.field(
        description="When the order is expected now: moves with the carriers' estimates."
    )
    def estimated_delivery(self) -> date:
        return self.row.estimated_delivery

    @strawberry.field(
        description=(
            "The delivery date promised when the order was placed; never moves afterwards "
            "(compare with deliveredAt)."
        )
    )
    def promised_delivery(self) -> date:
        return self.row.promised_delivery or self.row.estimated_delivery

    @strawberry.field(
        description="When the order was delivered (its last parcel, as the carrier reported)."
    )
    def delivered_at(self) -> datetime | None:
        return utc(self.row.delivered_at)

    @strawberry.field(
        description=(
            "Whether it arrived on or before promisedDelivery (UTC date); null until delivered."
        )
    )
    def delivered_on_time(self) -> bool | None:
        delivered = self.row.delivered_at
        if delivered is None:
            return None
        promise = self.row.promised_delivery or self.row.estimated_delivery
        return utc(delivered).date() <= promise

    @strawberry.field
    def subtotal(self) -> Money:
        return Money(amount=self.row.subtotal_minor, currency=self.row.currency)

    @strawberry.field
    def shipping(self) -> Money:
        return Money(amount=self.row.shipping_minor, currency=self.row.currency)

    @strawberry.field(description="VAT included in the total.")
    def tax(self) -> Money:
        return Money(amount=self.row.tax_minor, currency=self.row.currency)

    @strawberry.field
    def total(self) -> Money:
        return Money(amount=self.row.total_minor, currency=self.row.currency)

    @strawberry.field
    def refunded(self) -> Money:
        return Money(amount=self.row.refunded_minor, currency=self.row.currency)

    @strawberry.field
    def shipping_address(self) -> Address:
        r = self.row
        return Address(
            name=r.ship_name,
            line1=r.ship_line1,
            line2=r.ship_line2,
            city=r.ship_city,
            postal_code=r.ship_postal_code,
            country=r.ship_country,
        )

    @strawberry.field
    def payment(self) -> PaymentSummary:
        return PaymentSummary(brand=self.row.payment_brand, last4=self.row.payment_last4)

    @strawberry.field
    async def lines(self, info: Info) -> list[OrderLineType]:
        rows = self.preloaded_lines
        if rows is None:
            assert self.row.id is not None
            rows = await OrderLinesByOrderIdLoader.of(info.context).load(self.row.id)
        currency = self.row.currency  # read once, not per line
        return [OrderLineType(row=row, currency=currency) for row in rows]

    @strawberry.field(
        description="Parcels sent so far, oldest first, each with its tracking events."
    )
    async def shipments(self, info: Info) -> list[ShipmentType]:
        if self.preloaded_shipments is not None:
            return [ShipmentType(row=row) for row in self.preloaded_shipments]
        return await shipments_of(info.context, self.row.id)

    @strawberry.field(
        description=(
            "What happened to the order, oldest first: placed, paid, shipped, delivered, "
            "return steps, refunds, cancellation. Never who did it."
        )
    )
    async def timeline(self, info: Info) -> list[TimelineEventType]:
        return await timeline_of(info.context, self.row)

    @strawberry.field(description="Return requests for this order, oldest first.")
    async def returns(self, info: Info) -> list[ReturnRequestType]:
        return await returns_of(info.context, self.row)


@strawberry.type
class OrderEdge:
    cursor: str
    node: OrderType


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo


@strawberry.input
class OrderLineInput:
    sku: str
    quantity: int


@strawberry.input
class AddressInput:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str = strawberry.field(description="ISO 3166-1 alpha-2, e.g. DE.")
    line2: str = ""


@strawberry.input
class OrderFilterInput:
    status: list[OrderStatusEnum] | None = None
    placed_from: datetime | None = None
    placed_to: datetime | None = None
    text: str | None = strawberry.field(default=None, description="Search item names and SKUs.")


@strawberry.type
class PlaceOrderPayload:
    order: OrderType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CancelOrderPayload:
    order: OrderType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CartLine:
    sku: str
    name: str
    quantity: int
    unit_price: Money
    available: bool
    in_stock: int


@strawberry.type(description="A cart draft: not saved, priced at today's prices.")
class CartDraft:
    lines: list[CartLine]
    subtotal: Money
    shipping: Money
    tax: Money
    total: Money
    unavailable_skus: list[str]


strawberry.enum(CheckoutStatusEnum, name="CheckoutStatus")


@strawberry.type(name="CheckoutLine")
class CheckoutLineType:
    row: strawberry.Private[SummaryLine]
    currency: strawberry.Private[str]

    @strawberry.field
    def sku(self) -> str:
        return self.row.sku

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def quantity(self) -> int:
        return self.row.quantity

    @strawberry.field(description="The price on this summary (what placeOrder will charge).")
    def unit_price(self) -> Money:
        return Money(amount=self.row.unit_price_minor, currency=self.currency)

    @strawberry.field
    def line_total(self) -> Money:
        return Money(amount=self.row.unit_price_minor * self.row.quantity, currency=self.currency)

    @strawberry.field(description="Enough stock right now (stock is taken only on placeOrder).")
    def available(self) -> bool:
        return self.row.available

    @strawberry.field
    def in_stock(self) -> int:
        return self.row.in_stock


@strawberry.type(
    name="Checkout",
    description=(
        "The order summary before purchase. `code` is the order code reserved for this "
        "purchase: placeOrder(checkoutCode:) creates the order with exactly this code."
    ),
)
class CheckoutType:
    view: strawberry.Private[CheckoutView]

    @strawberry.field(description="The order code, as XXXX-XXXX-XXXX-XXXX.")
    def code(self) -> str:
        return codes.display(self.view.checkout.code)

    @strawberry.field
    def status(self) -> CheckoutStatusEnum:
        return CheckoutStatusEnum(self.view.checkout.status)

    @strawberry.field
    def lines(self) -> list[CheckoutLineType]:
        return [
            CheckoutLineType(row=line, currency=self.view.checkout.currency)
            for line in self.view.lines
        ]

    @strawberry.field
    def subtotal(self) -> Money:
        return Money(amount=self.view.checkout.subtotal_minor, currency=self.view.checkout.currency)

    @strawberry.field
    def shipping(self) -> Money:
        return Money(amount=self.view.checkout.shipping_minor, currency=self.view.checkout.currency)

    @strawberry.field(description="VAT included in the total.")
    def tax(self) -> Money:
        return Money(amount=self.view.checkout.tax_minor, currency=self.view.checkout.currency)

    @strawberry.field
    def total(self) -> Money:
        return Money(amount=self.view.checkout.total_minor, currency=self.view.checkout.currency)

    @strawberry.field
    def estimated_delivery(self) -> date:
        return self.view.checkout.estimated_delivery

    @strawberry.field
    def shipping_address(self) -> Address:
        c = self.view.checkout
        return Address(
            name=c.ship_name,
            line1=c.ship_line1,
            line2=c.ship_line2,
            city=c.ship_city,
            postal_code=c.ship_postal_code,
            country=c.ship_country,
        )

    @strawberry.field
    def expires_at(self) -> datetime:
        return utc(self.view.checkout.expires_at)


@strawberry.type
class CheckoutPayload:
    checkout: CheckoutType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.enum(description="What changed.")
class OrderUpdateType(Enum):
    STATUS_CHANGED = "STATUS_CHANGED"
    TRACKING_EVENT = "TRACKING_EVENT"
    RETURN_UPDATED = "RETURN_UPDATED"
    CHANGED = "CHANGED"


@strawberry.type(description="One change to an order you follow, with the order as it is now.")
class OrderUpdate:
    type: OrderUpdateType
    occurred_at: datetime
    order: OrderType
