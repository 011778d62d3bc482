"""An order's timeline for its owner, derived from the rows that exist (pure, no I/O):
the order (placed, paid, cancelled), its shipments (shipped, delivered) and its returns
(each status step and the refund). Never who did it: staff identities stay private.

A refund is shown once the provider has confirmed it: a return becomes REFUNDED, and the
order's `refunded_minor` grows, in the transaction that completes the refund
(app/payments/refunds.py). A refund still on its way (PENDING) is not shown yet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from app.orders.models import Order
from app.returns.models import ReturnRequest, ReturnStatus
from app.shipments.models import Shipment


class TimelineKind(StrEnum):
    PLACED = "PLACED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    RETURN_REQUESTED = "RETURN_REQUESTED"
    RETURN_APPROVED = "RETURN_APPROVED"
    RETURN_REJECTED = "RETURN_REJECTED"
    RETURN_RECEIVED = "RETURN_RECEIVED"
    REFUNDED = "REFUNDED"


# Steps recorded at the same instant are shown in the order they happen.
_RANK = {kind: rank for rank, kind in enumerate(TimelineKind)}


@dataclass(frozen=True)
class TimelineEntry:
    kind: TimelineKind
    at: datetime
    currency: str
    amount_minor: int | None = None  # PAID and REFUNDED
    rma_code: str | None = None  # return steps and return refunds (canonical)
    carrier: str | None = None  # SHIPPED and DELIVERED
    tracking_number: str | None = None


def build_timeline(
    order: Order, shipments: list[Shipment], returns: list[ReturnRequest]
) -> list[TimelineEntry]:
    """Oldest first. A delivery is stamped with the carrier's clock (often to the second),
    so it is shown with that time but never placed before its parcel was shipped."""
    cur = order.currency
    steps: list[tuple[datetime, TimelineEntry]] = []

    def add(entry: TimelineEntry, not_before: datetime | None = None) -> None:
        key = entry.at if not_before is None else max(entry.at, not_before)
        steps.append((key, entry))

    add(TimelineEntry(TimelineKind.PLACED, order.placed_at, cur))
    if order.payment_reference:
        add(TimelineEntry(TimelineKind.PAID, order.placed_at, cur, order.total_minor))
    for s in shipments:
        carrier, number = s.carrier, s.tracking_number
        add(
            TimelineEntry(
                TimelineKind.SHIPPED, s.shipped_at, cur, carrier=carrier, tracking_number=number
            )
        )
        if s.delivered_at is not None:
            add(
                TimelineEntry(
                    TimelineKind.DELIVERED,
                    s.delivered_at,
                    cur,
                    carrier=carrier,
                    tracking_number=number,
                ),
                not_before=s.shipped_at,
            )
    return_refunds = 0
    for r in returns:
        for kind, at in (
            (TimelineKind.RETURN_REQUESTED, r.requested_at),
            (TimelineKind.RETURN_APPROVED, r.approved_at),
            (TimelineKind.RETURN_REJECTED, r.rejected_at),
            (TimelineKind.RETURN_RECEIVED, r.received_at),
        ):
            if at is not None:
                add(TimelineEntry(kind, at, cur, rma_code=r.rma_code))
        if r.status == ReturnStatus.REFUNDED.value and r.refunded_at is not None:
            amount = r.refund_minor or 0
            return_refunds += amount
            add(TimelineEntry(TimelineKind.REFUNDED, r.refunded_at, cur, amount, r.rma_code))
    if order.cancelled_at is not None:
        add(TimelineEntry(TimelineKind.CANCELLED, order.cancelled_at, cur))
        # What the order has had back beyond its returns: the cancellation's refund.
        cancel_refund = order.refunded_minor - return_refunds
        if cancel_refund > 0:
            add(TimelineEntry(TimelineKind.REFUNDED, order.cancelled_at, cur, cancel_refund))
    steps.sort(key=lambda step: (step[0], _RANK[step[1].kind]))
    return [entry for _, entry in steps]
