"""What fulfilment use cases answer, and the values they pass around (no database)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from app.errors import BadUserInput
from app.orders.models import Order
from app.shipments.models import Shipment, ShipmentStatus
from app.shipments.transitions import Progress


@dataclass(frozen=True)
class PickLine:
    """One order line as the warehouse sees it: where it is and how far it got."""

    order_line_id: int
    sku: str
    name: str
    bin_location: str
    ordered: int
    packed: int
    shipped: int

    @property
    def to_pick(self) -> int:
        return self.ordered - self.packed

    @property
    def ready_to_ship(self) -> int:
        return self.packed - self.shipped


def bin_order(line: PickLine) -> tuple[bool, str, str]:
    """Walk the aisles once: by bin location (A-01-03 < A-02-07 < B-…), unknown bins last."""
    return (line.bin_location == "", line.bin_location, line.sku)


@dataclass(frozen=True)
class ItemCount:
    sku: str
    quantity: int


class ScanMismatch(BadUserInput):
    """The scan is not exactly what is being packed. Nothing is recorded."""

    def __init__(self, missing: list[ItemCount], unexpected: list[ItemCount]) -> None:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"{i.quantity} x {i.sku}" for i in missing))
        if unexpected:
            parts.append(
                "not in this parcel " + ", ".join(f"{i.quantity} x {i.sku}" for i in unexpected)
            )
        super().__init__(
            "The scan does not match the items to pack (" + "; ".join(parts) + "). "
            "Nothing was packed: fix the parcel and scan it again.",
            field="scannedSkus",
        )
        self.missing = missing
        self.unexpected = unexpected


@dataclass(frozen=True)
class PackResult:
    order: Order
    packed: list[ItemCount]


@dataclass(frozen=True)
class ShipResult:
    order: Order
    shipment: Shipment


@dataclass(frozen=True)
class EventResult:
    order: Order
    shipment: Shipment
    recorded: bool  # False: this event id was recorded before (idempotent repeat)


@dataclass(frozen=True)
class Applied:
    """What one tracking event did: recorded (not a repeat), and whether it delivered the
    parcel on time (True), late (False) or did not deliver it (None)."""

    recorded: bool
    delivered_on_time: bool | None = None


class CarrierOutcome(StrEnum):
    RECORDED = "RECORDED"
    DUPLICATE = "DUPLICATE"
    UNKNOWN_SHIPMENT = "UNKNOWN_SHIPMENT"


@dataclass(frozen=True)
class QueuePage:
    orders: list[Order]
    cursors: list[str]
    has_next_page: bool


@dataclass(frozen=True)
class ShippedLine:
    sku: str
    name: str
    quantity: int


@dataclass
class Counts:
    lines: list[PickLine]
    shipments: list[Shipment] = field(default_factory=list)

    def progress(self) -> Progress:
        return Progress(
            ordered=sum(line.ordered for line in self.lines),
            packed=sum(line.packed for line in self.lines),
            shipped=sum(line.shipped for line in self.lines),
            shipments=len(self.shipments),
            delivered_shipments=sum(
                1 for s in self.shipments if s.status == ShipmentStatus.DELIVERED.value
            ),
        )


def tracking_fingerprint(carrier: str, tracking_number: str) -> str:
    """For logs: which tracking number, without writing it down."""
    return hashlib.sha256(f"{carrier}:{tracking_number}".encode()).hexdigest()[:12]
