"""Tables of fulfilment: packs (what a scan confirmed), shipments (what left with a carrier)
and tracking events (what the carrier said happened to a shipment).

Quantities are kept per order line: packed = sum of pack lines, shipped = sum of shipment
lines. A unit is packed before it ships, and never packed or shipped twice.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db import utcnow


class ShipmentStatus(StrEnum):
    LABEL_CREATED = "LABEL_CREATED"
    IN_TRANSIT = "IN_TRANSIT"
    OUT_FOR_DELIVERY = "OUT_FOR_DELIVERY"
    ATTEMPTED_DELIVERY = "ATTEMPTED_DELIVERY"
    DELAYED = "DELAYED"
    DELIVERED = "DELIVERED"
    EXCEPTION = "EXCEPTION"


class EventSource(StrEnum):
    CARRIER = "CARRIER"  # the signed webhook
    STAFF = "STAFF"  # addTrackingEvent


class Pack(SQLModel, table=True):
    """One confirmed scan: these units of the order are packed (not yet necessarily shipped)."""

    __tablename__ = "packs"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    packed_by: int | None = Field(default=None, foreign_key="users.id")
    packed_at: datetime = Field(default_factory=utcnow)


class PackLine(SQLModel, table=True):
    __tablename__ = "pack_lines"

    id: int | None = Field(default=None, primary_key=True)
    pack_id: int = Field(foreign_key="packs.id", index=True)
    order_line_id: int = Field(foreign_key="order_lines.id", index=True)
    quantity: int


class Shipment(SQLModel, table=True):
    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("carrier", "tracking_number", name="uq_shipments_carrier_tracking_number"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    carrier: str = Field(max_length=40)
    tracking_number: str = Field(max_length=64)
    status: str = Field(default=ShipmentStatus.LABEL_CREATED.value, max_length=24)
    estimated_delivery: date | None = Field(default=None)
    shipped_by: int | None = Field(default=None, foreign_key="users.id")
    shipped_at: datetime = Field(default_factory=utcnow)
    delivered_at: datetime | None = Field(default=None)
    # occurred_at of the newest event applied: an older event arriving late is kept in the
    # history but does not move the status back.
    last_event_at: datetime | None = Field(default=None)
    updated_at: datetime = Field(default_factory=utcnow)


class ShipmentLine(SQLModel, table=True):
    __tablename__ = "shipment_lines"

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipments.id", index=True)
    order_line_id: int = Field(foreign_key="order_lines.id", index=True)
    quantity: int


class TrackingEvent(SQLModel, table=True):
    __tablename__ = "tracking_events"
    __table_args__ = (
        # Idempotency: a carrier's event id is recorded once, however often it is delivered.
        UniqueConstraint(
            "carrier", "carrier_event_id", name="uq_tracking_events_carrier_carrier_event_id"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: int = Field(foreign_key="shipments.id", index=True)
    carrier: str = Field(max_length=40)
    carrier_event_id: str = Field(max_length=100)
    status: str = Field(max_length=24)
    location: str = Field(default="", max_length=200)  # the carrier's text: owner only
    # A recognised town (app/tracking/places.py), or "": all a public link shows of where
    town: str = Field(default="", max_length=100)
    description: str = Field(default="", max_length=500)  # the carrier's text: owner only
    occurred_at: datetime
    received_at: datetime = Field(default_factory=utcnow)
    source: str = Field(default=EventSource.CARRIER.value, max_length=8)
    recorded_by: int | None = Field(default=None, foreign_key="users.id")
