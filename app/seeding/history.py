"""The history of the bench customer's orders (app/seeding/bench.py): shipments in one or
two parcels with their tracking events, and for a third of the delivered orders a return
request in one of its statuses. Everything is drawn from the caller's `rng`, in a fixed
order, so that one seed always writes the same rows."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.orders.models import OrderStatus
from app.returns.models import ReturnReason, ReturnStatus
from app.seeding import rows
from app.shipments.models import ShipmentStatus

CARRIERS = ["DHL", "UPS", "DPD", "GLS"]
HUBS = ["Leipzig", "Hannover", "Frankfurt", "Kassel", "Nuremberg", "Cologne"]
LC, IT, OFD, DLV = (
    ShipmentStatus.LABEL_CREATED.value,
    ShipmentStatus.IN_TRANSIT.value,
    ShipmentStatus.OUT_FOR_DELIVERY.value,
    ShipmentStatus.DELIVERED.value,
)
IN_TRANSIT_EVENTS = {2: [LC, IT], 3: [LC, IT, IT], 4: [LC, IT, IT, OFD]}
DELIVERED_EVENTS = {2: [LC, DLV], 3: [LC, IT, DLV], 4: [LC, IT, OFD, DLV]}
EVENT_TEXT = {
    LC: "Shipment information received",
    IT: "Arrived at the sorting centre",
    OFD: "Out for delivery",
    DLV: "Delivered, handed to the recipient",
}
RETURN_STATUSES = [
    ReturnStatus.REQUESTED,
    ReturnStatus.APPROVED,
    ReturnStatus.REJECTED,
    ReturnStatus.RECEIVED,
    ReturnStatus.REFUNDED,
]
RETURN_WEIGHTS = [2, 2, 1, 2, 3]
# What the bench customer's orders are, by share of their orders.
KINDS = [("not_shipped", 0.40), ("cancelled", 0.05), ("in_transit", 0.15), ("delivered", 0.40)]


@dataclass
class Ids:
    """The last id written per table (the seed numbers rows itself)."""

    order_line: int = 0
    shipment: int = 0
    shipment_line: int = 0
    event: int = 0
    return_request: int = 0
    return_line: int = 0


@dataclass
class History:
    """The rows below the bench customer's orders, written after the orders."""

    shipments: list[dict[str, Any]] = field(default_factory=list)
    shipment_lines: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    returns: list[dict[str, Any]] = field(default_factory=list)
    return_lines: list[dict[str, Any]] = field(default_factory=list)

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Table name -> rows, in the order they can be inserted (parents first)."""
        return {
            "shipments": self.shipments,
            "shipment_lines": self.shipment_lines,
            "tracking_events": self.events,
            "return_requests": self.returns,
            "return_lines": self.return_lines,
        }


def story(
    rng: random.Random,
    order: dict[str, Any],
    lines: list[dict[str, Any]],
    ids: Ids,
    history: History,
    new_code: Callable[[], str],
) -> str:
    """Give one of the bench customer's orders its state and history rows; returns its
    kind. Mutates `order` (status, refunds, timestamps)."""
    placed: datetime = order["placed_at"]
    draw = rng.random()
    kind = KINDS[-1][0]
    for name, share in KINDS:
        if draw < share:
            kind = name
            break
        draw -= share
    if kind == "not_shipped":
        order["status"] = rng.choice(
            [OrderStatus.PLACED, OrderStatus.PROCESSING, OrderStatus.PACKED]
        ).value
        order["updated_at"] = placed + timedelta(hours=2)
        return kind
    if kind == "cancelled":
        cancelled = placed + timedelta(hours=3, minutes=rng.randint(0, 59))
        order.update(
            status=OrderStatus.CANCELLED.value,
            cancelled_at=cancelled,
            updated_at=cancelled,
            refunded_minor=order["total_minor"],
        )
        return kind
    # Parcels: one, or two when the order splits (by line, or a line's units).
    parcels: list[list[tuple[dict[str, Any], int]]]
    if rng.random() < 0.35 and len(lines) >= 2:
        split = len(lines) // 2
        parcels = [[(ln, ln["quantity"]) for ln in lines[:split]]]
        parcels.append([(ln, ln["quantity"]) for ln in lines[split:]])
    elif rng.random() < 0.35 and lines[0]["quantity"] >= 2:
        first = lines[0]["quantity"] // 2
        parcels = [[(lines[0], first)], [(lines[0], lines[0]["quantity"] - first)]]
        parcels[0] += [(ln, ln["quantity"]) for ln in lines[1:]]
    else:
        parcels = [[(ln, ln["quantity"]) for ln in lines]]
    delivered = kind == "delivered"
    partial = not delivered and len(parcels) == 2 and rng.random() < 0.4
    if partial:
        parcels = parcels[:1]
    shipments: list[dict[str, Any]] = []
    for index, parcel in enumerate(parcels):
        ids.shipment += 1
        shipped = placed + timedelta(days=1 + index, hours=rng.randint(1, 10))
        n_events = rng.randint(3, 4) if delivered else rng.randint(2, 4)
        statuses = (DELIVERED_EVENTS if delivered else IN_TRANSIT_EVENTS)[n_events]
        carrier = rng.choice(CARRIERS)
        at = shipped
        for status in statuses:
            ids.event += 1
            history.events.append(
                rows.tracking_event(
                    ids.event,
                    ids.shipment,
                    carrier,
                    f"bench-ev-{ids.event}",
                    status,
                    location="" if status == LC else rng.choice(HUBS),
                    description=EVENT_TEXT[status],
                    occurred_at=at,
                    received_at=at + timedelta(seconds=rng.randint(1, 90)),
                )
            )
            last = at
            at += timedelta(hours=rng.randint(6, 20), minutes=rng.randint(0, 59))
        shipment = rows.shipment(
            ids.shipment,
            order["id"],
            carrier,
            f"{carrier}{ids.shipment:010d}",
            statuses[-1],
            estimated_delivery=(shipped + timedelta(days=2)).date(),
            shipped_at=shipped,
            delivered_at=last if delivered else None,
            last_event_at=last,
        )
        shipments.append(shipment)
        history.shipments.append(shipment)
        for line, quantity in parcel:
            ids.shipment_line += 1
            history.shipment_lines.append(
                rows.shipment_line(ids.shipment_line, ids.shipment, line["id"], quantity)
            )
    order["status"] = (
        OrderStatus.DELIVERED.value
        if delivered
        else OrderStatus.PARTIALLY_SHIPPED.value
        if partial
        else OrderStatus.SHIPPED.value
    )
    order["updated_at"] = max(s["updated_at"] for s in shipments)
    if delivered and rng.random() < 0.35:
        kind = "returned"
        returned(rng, order, lines, shipments[0], parcels[0], ids, history, new_code)
    elif not delivered:
        kind = "partially_shipped" if partial else "in_transit"
    return kind


def returned(
    rng: random.Random,
    order: dict[str, Any],
    lines: list[dict[str, Any]],
    shipment: dict[str, Any],
    parcel: list[tuple[dict[str, Any], int]],
    ids: Ids,
    history: History,
    new_code: Callable[[], str],
) -> None:
    """A return request for some units of the first parcel, in a random status."""
    status = rng.choices(RETURN_STATUSES, RETURN_WEIGHTS)[0]
    requested = shipment["delivered_at"] + timedelta(days=2, hours=rng.randint(0, 12))
    decided = requested + timedelta(days=1)
    approved = decided if status != ReturnStatus.REJECTED else None
    rejected = decided if status == ReturnStatus.REJECTED else None
    got_back = status in (ReturnStatus.RECEIVED, ReturnStatus.REFUNDED)
    received = decided + timedelta(days=3) if got_back else None
    refunded = decided + timedelta(days=4) if status == ReturnStatus.REFUNDED else None
    ids.return_request += 1
    refund = 0
    returned_units = 0
    for line, shipped_units in parcel:
        quantity = rng.randint(1, shipped_units)
        returned_units += quantity
        refund += quantity * line["unit_price_minor"]
        ids.return_line += 1
        history.return_lines.append(
            {
                "id": ids.return_line,
                "return_id": ids.return_request,
                "order_line_id": line["id"],
                "shipment_id": shipment["id"],
                "quantity": quantity,
                "received_quantity": quantity if got_back else None,
            }
        )
    history.returns.append(
        {
            "id": ids.return_request,
            "rma_code": new_code(),
            "order_id": order["id"],
            "status": status.value,
            "reason": rng.choice(list(ReturnReason)).value,
            "comment": rng.choice(["", "Too small.", "Arrived scratched."]),
            "rejection_reason": "Used items cannot be returned." if rejected else None,
            "currency": "EUR",
            "refund_minor": refund if refunded else None,
            "refund_reference": f"re_bench_{ids.return_request}" if refunded else None,
            "requested_at": requested,
            "approved_at": approved,
            "rejected_at": rejected,
            "received_at": received,
            "refunded_at": refunded,
            "updated_at": refunded or received or decided,
            "approved_by": None,
            "rejected_by": None,
            "received_by": None,
            "refunded_by": None,
        }
    )
    if got_back:
        whole = returned_units == sum(line["quantity"] for line in lines)
        order["status"] = (
            OrderStatus.RETURNED.value if whole else OrderStatus.PARTIALLY_RETURNED.value
        )
        order["updated_at"] = received
    if refunded:
        order["refunded_minor"] = refund
        order["updated_at"] = refunded
