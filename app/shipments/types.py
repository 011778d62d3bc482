"""GraphQL types of fulfilment and tracking. Every field is listed explicitly; internal
ids, carrier event ids and who did what stay private."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from app.graphql.common import PageInfo, utc
from app.graphql.context import Context, Info
from app.graphql.errors import UserError
from app.orders.models import Order as OrderRow
from app.orders.models import OrderStatus as OrderStatusEnum
from app.security import codes
from app.shipments.loaders import (
    PickLinesByOrderIdLoader,
    ShipmentLinesByShipmentIdLoader,
    ShipmentsByOrderIdLoader,
    TrackingEventsByShipmentIdLoader,
)
from app.shipments.models import Shipment as ShipmentRow
from app.shipments.models import ShipmentStatus as ShipmentStatusEnum
from app.shipments.models import TrackingEvent as TrackingEventRow
from app.shipments.service import ItemCount, PickLine, ShippedLine

if TYPE_CHECKING:
    from app.orders.types import Address

strawberry.enum(ShipmentStatusEnum, name="ShipmentStatus")  # registers the enum on the class


@strawberry.type(name="TrackingEvent", description="What the carrier reported, and when.")
class TrackingEventType:
    row: strawberry.Private[TrackingEventRow]

    @strawberry.field
    def status(self) -> ShipmentStatusEnum:
        return ShipmentStatusEnum(self.row.status)

    @strawberry.field(description="Where it happened, as the carrier says (may be empty).")
    def location(self) -> str:
        return self.row.location

    @strawberry.field
    def description(self) -> str:
        return self.row.description

    @strawberry.field(description="When it happened (carrier's time, in UTC).")
    def occurred_at(self) -> datetime:
        return utc(self.row.occurred_at)


@strawberry.type(name="ShipmentLine")
class ShipmentLineType:
    row: strawberry.Private[ShippedLine]

    @strawberry.field
    def sku(self) -> str:
        return self.row.sku

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def quantity(self) -> int:
        return self.row.quantity


# The fields of Shipment answered from app/shipments/reads.py SHIPMENT_SUMMARY_COLUMNS
# alone (lines and events need only the parcel's id): a history page that selects no other
# field of its parcels reads only those columns (tests/api/test_my_orders.py).
SHIPMENT_SUMMARY_FIELDS = frozenset(
    {"__typename", "carrier", "status", "estimatedDelivery", "lines", "events"}
)


@strawberry.type(name="Shipment", description="A parcel that left with a carrier.")
class ShipmentType:
    row: strawberry.Private[ShipmentRow]

    @strawberry.field
    def carrier(self) -> str:
        return self.row.carrier

    @strawberry.field
    def tracking_number(self) -> str:
        return self.row.tracking_number

    @strawberry.field
    def status(self) -> ShipmentStatusEnum:
        return ShipmentStatusEnum(self.row.status)

    @strawberry.field
    def estimated_delivery(self) -> date | None:
        return self.row.estimated_delivery

    @strawberry.field
    def shipped_at(self) -> datetime:
        return utc(self.row.shipped_at)

    @strawberry.field(
        description="When the carrier delivered this parcel (its DELIVERED event's time)."
    )
    def delivered_at(self) -> datetime | None:
        return utc(self.row.delivered_at)

    @strawberry.field(description="The items in this parcel.")
    async def lines(self, info: Info) -> list[ShipmentLineType]:
        assert self.row.id is not None
        rows = await ShipmentLinesByShipmentIdLoader.of(info.context).load(self.row.id)
        return [ShipmentLineType(row=row) for row in rows]

    @strawberry.field(description="Tracking events, newest first.")
    async def events(self, info: Info) -> list[TrackingEventType]:
        assert self.row.id is not None
        rows = await TrackingEventsByShipmentIdLoader.of(info.context).load(self.row.id)
        return [TrackingEventType(row=row) for row in rows]


async def shipments_of(context: Context, order_id: int | None) -> list[ShipmentType]:
    """An order's shipments, oldest first, batched across every order in the response."""
    assert order_id is not None
    rows = await ShipmentsByOrderIdLoader.of(context).load(order_id)
    return [ShipmentType(row=row) for row in rows]


@strawberry.type(name="PickLine")
class PickLineType:
    row: strawberry.Private[PickLine]

    @strawberry.field
    def sku(self) -> str:
        return self.row.sku

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field(description="Warehouse bin to pick from, e.g. A-01-03.")
    def bin_location(self) -> str:
        return self.row.bin_location

    @strawberry.field(description="Units still to pick and pack (0 when this line is done).")
    def quantity(self) -> int:
        return self.row.to_pick

    @strawberry.field
    def ordered_quantity(self) -> int:
        return self.row.ordered

    @strawberry.field(description="Units packed so far (shipped ones included).")
    def packed_quantity(self) -> int:
        return self.row.packed

    @strawberry.field
    def shipped_quantity(self) -> int:
        return self.row.shipped

    @strawberry.field(description="Units packed and waiting to ship.")
    def ready_to_ship_quantity(self) -> int:
        return self.row.ready_to_ship


@strawberry.type(
    name="FulfillmentOrder",
    description=(
        "An order as the warehouse sees it: what to pick, where, and where it goes. "
        "No payment and no customer account details."
    ),
)
class FulfillmentOrderType:
    row: strawberry.Private[OrderRow]

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
    def estimated_delivery(self) -> date:
        return self.row.estimated_delivery

    @strawberry.field(description="Where the parcel goes (for the label).")
    def shipping_address(
        self,
    ) -> Annotated[Address, strawberry.lazy("app.orders.types")]:
        from app.orders.types import Address

        r = self.row
        return Address(
            name=r.ship_name,
            line1=r.ship_line1,
            line2=r.ship_line2,
            city=r.ship_city,
            postal_code=r.ship_postal_code,
            country=r.ship_country,
        )

    @strawberry.field(
        description=(
            "The pick list: every line, sorted by bin location so a picker walks the aisles "
            "once; `quantity` is what is still to pick."
        )
    )
    async def lines(self, info: Info) -> list[PickLineType]:
        assert self.row.id is not None
        rows = await PickLinesByOrderIdLoader.of(info.context).load(self.row.id)
        return [PickLineType(row=row) for row in rows]

    @strawberry.field(description="Shipments so far, oldest first.")
    async def shipments(self, info: Info) -> list[ShipmentType]:
        return await shipments_of(info.context, self.row.id)


@strawberry.type
class FulfillmentOrderEdge:
    cursor: str
    node: FulfillmentOrderType


@strawberry.type
class FulfillmentOrderConnection:
    edges: list[FulfillmentOrderEdge]
    page_info: PageInfo


@strawberry.input(description="Part of an order: a SKU and how many units (all if left out).")
class FulfillmentLineInput:
    sku: str
    quantity: int | None = None


@strawberry.type(name="ItemCount", description="A number of units of one SKU.")
class ItemCountType:
    sku: str
    quantity: int

    @staticmethod
    def of(items: list[ItemCount]) -> list[ItemCountType]:
        return [ItemCountType(sku=item.sku, quantity=item.quantity) for item in items]


@strawberry.type
class PackOrderPayload:
    order: FulfillmentOrderType | None = None
    packed: list[ItemCountType] = strawberry.field(default_factory=list)
    missing: list[ItemCountType] = strawberry.field(
        default_factory=list, description="Expected in the parcel but not scanned."
    )
    unexpected: list[ItemCountType] = strawberry.field(
        default_factory=list, description="Scanned but not part of the parcel."
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ShipOrderPayload:
    order: FulfillmentOrderType | None = None
    shipment: ShipmentType | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AddTrackingEventPayload:
    shipment: ShipmentType | None = None
    recorded: bool = strawberry.field(
        default=False,
        description="False when this event id was recorded before (nothing changed).",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)
