"""The status rules of fulfilment, as pure functions (no I/O): which step may happen in
which order status, what the order status is afterwards, how a tracking event moves a
shipment, and what the order's estimated delivery becomes.

Order statuses (DESIGN §1.6-7):

    PLACED ──pack part──▶ PROCESSING ──pack rest──▶ PACKED
      │  └────────────pack all────────────────────────┘│
      │                                               ship all / ship part
      ▼                                                ▼
    CANCELLED (owner, before anything ships)   PARTIALLY_SHIPPED ──ship rest──▶ SHIPPED
                                                       │                           │
                                               last shipment delivered, all shipped│
                                                       └──────────▶ DELIVERED ◀────┘

* PROCESSING: fulfilment has started, part of the order is packed.
* PACKED: every unit is packed, nothing has left yet.
* PARTIALLY_SHIPPED: some units left with a carrier, others are still in the warehouse
  (they may be packed and shipped later: split shipments).
* SHIPPED: every unit left; DELIVERED: every unit shipped and every shipment delivered.

Anything else is an illegal transition: refused with CONFLICT, nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from app.errors import Conflict
from app.orders.models import OrderStatus
from app.shipments.models import ShipmentStatus


class Step(StrEnum):
    PACK = "PACK"  # a scan confirmed some units packed
    SHIP = "SHIP"  # a shipment left with a carrier
    DELIVER = "DELIVER"  # a shipment was delivered
    CANCEL = "CANCEL"  # the owner cancelled


_S = OrderStatus
ALLOWED: dict[Step, frozenset[OrderStatus]] = {
    Step.PACK: frozenset({_S.PLACED, _S.PROCESSING, _S.PARTIALLY_SHIPPED}),
    Step.SHIP: frozenset({_S.PROCESSING, _S.PACKED, _S.PARTIALLY_SHIPPED}),
    Step.DELIVER: frozenset({_S.PARTIALLY_SHIPPED, _S.SHIPPED}),
    Step.CANCEL: frozenset({_S.PLACED, _S.PROCESSING, _S.PACKED}),
}
# A carrier's delivery confirmation is a fact, not a request: once the order is past
# delivery (returns), a late confirmation is recorded on the shipment and the order stays.
_PAST_DELIVERY = frozenset({_S.DELIVERED, _S.PARTIALLY_RETURNED, _S.RETURNED})

_WHY = {
    (Step.PACK, _S.PACKED): "Every item of this order is packed already.",
    (Step.PACK, _S.SHIPPED): "The order has shipped; there is nothing left to pack.",
    (Step.PACK, _S.DELIVERED): "The order is delivered; there is nothing left to pack.",
    (Step.SHIP, _S.PLACED): "Nothing is packed yet: pack the items (packOrder) first.",
    (Step.SHIP, _S.SHIPPED): "Every item of this order has shipped already.",
    (Step.SHIP, _S.DELIVERED): "The order is delivered already.",
}


class IllegalTransition(Conflict):
    """A step the order's status does not allow. A CONFLICT in `userErrors` on `code`."""

    def __init__(self, current: OrderStatus, step: Step) -> None:
        message = _WHY.get((step, current)) or (
            f"An order that is {current.value} cannot be {_PAST[step]}."
        )
        super().__init__(
            message,
            field="code",
            details={"status": current.value, "step": step.value},
        )
        self.current = current
        self.step = step


_PAST = {
    Step.PACK: "packed",
    Step.SHIP: "shipped",
    Step.DELIVER: "delivered",
    Step.CANCEL: "cancelled",
}


@dataclass(frozen=True)
class Progress:
    """Where the order's units are, counted *after* the step being applied."""

    ordered: int  # units ordered
    packed: int  # units packed (shipped ones included)
    shipped: int  # units in shipments
    shipments: int
    delivered_shipments: int


def check_allowed(current: OrderStatus, step: Step) -> None:
    """Raise IllegalTransition unless `step` may happen to an order that is `current`."""
    if step is Step.DELIVER and current in _PAST_DELIVERY:
        return
    if current not in ALLOWED[step]:
        raise IllegalTransition(current, step)


def order_status_after(current: OrderStatus, step: Step, after: Progress) -> OrderStatus:
    """The order's status once `step` has happened (IllegalTransition if it may not)."""
    check_allowed(current, step)
    if step is Step.CANCEL:
        return _S.CANCELLED
    if step is Step.DELIVER and current in _PAST_DELIVERY:
        return current
    if after.shipped == 0:
        if after.packed == 0:
            return _S.PLACED
        return _S.PACKED if after.packed >= after.ordered else _S.PROCESSING
    if after.shipped < after.ordered:
        return _S.PARTIALLY_SHIPPED
    if after.shipments > 0 and after.delivered_shipments >= after.shipments:
        return _S.DELIVERED
    return _S.SHIPPED


def shipment_status_after(
    current: ShipmentStatus,
    last_event_at: datetime | None,
    reported: ShipmentStatus,
    occurred_at: datetime,
) -> ShipmentStatus:
    """A shipment follows its newest event. DELIVERED is final, and a delivery confirmation
    counts whatever its time stamp; an older event arriving late changes nothing."""
    if current is ShipmentStatus.DELIVERED or reported is ShipmentStatus.DELIVERED:
        return ShipmentStatus.DELIVERED
    if last_event_at is not None and occurred_at < last_event_at:
        return current
    return reported


def order_estimate(current: date, pending_estimates: list[date], everything_shipped: bool) -> date:
    """The order arrives when its last shipment does. `pending_estimates` are the estimates
    of shipments not yet delivered. While units are still in the warehouse, the original
    promise still holds for them, so the estimate can only move later."""
    if not pending_estimates:
        return current
    latest = max(pending_estimates)
    return latest if everything_shipped else max(latest, current)
