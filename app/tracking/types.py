"""Public tracking types: their own, minimal types (not the customer's Order/Shipment), so
a field added to an order can never leak through a shared link."""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from app.graphql.common import utc
from app.graphql.errors import UserError
from app.shipments.models import ShipmentStatus as ShipmentStatusEnum
from app.shipments.models import TrackingEvent as TrackingEventRow


@strawberry.type(
    description=(
        "A tracking event as a shared link shows it: status, time and a recognised town. "
        "Never the carrier's free text (location, description): only the owner sees that."
    )
)
class PublicTrackingEvent:
    row: strawberry.Private[TrackingEventRow]

    @strawberry.field
    def status(self) -> ShipmentStatusEnum:
        return ShipmentStatusEnum(self.row.status)

    @strawberry.field(
        description=(
            "The town, when the carrier gave a recognised one (empty otherwise): a name "
            "from the gazetteer, never the carrier's text."
        )
    )
    def location(self) -> str:
        return self.row.town

    @strawberry.field
    def occurred_at(self) -> datetime:
        return utc(self.row.occurred_at)


@strawberry.type(description="A parcel as a shared link shows it: no items, no address.")
class PublicShipment:
    carrier: str
    status: ShipmentStatusEnum
    estimated_delivery: date | None
    events: list[PublicTrackingEvent]


@strawberry.type(
    description=(
        "What a shared tracking link shows: shipment status, carrier, events and estimated "
        "delivery. No items, address, payment, email or order code."
    )
)
class TrackingLinkView:
    estimated_delivery: date | None
    shipments: list[PublicShipment]


@strawberry.type
class TrackingLinkMinted:
    token: str = strawberry.field(description="Share this; it is shown only once.")
    expires_at: datetime


@strawberry.type
class CreateTrackingLinkPayload:
    link: TrackingLinkMinted | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RevokeTrackingLinkPayload:
    ok: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)
