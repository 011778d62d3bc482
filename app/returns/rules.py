"""The rules of returns as pure functions (no I/O): status transitions, what may still be
returned, how a request is spread over parcels, the refund amount, and the order status.

Return statuses:

    REQUESTED ──approve──▶ APPROVED ──receive──▶ RECEIVED ──refund──▶ REFUNDED
        │                     │
        └──reject──▶ REJECTED ◀┘   (the items never came back, or may not be returned)

Anything else is an illegal transition: CONFLICT, nothing changes. Repeating a refund of
a REFUNDED return is not a transition: the service answers with the refund already made.

Refund rule (README "Returns and refunds"):
* items: unit price x units *received* (prices include VAT, so the VAT in them is refunded
  with them; the order's tax line is not refunded on top);
* shipping: the order's shipping fee is refunded with the refund that brings every unit
  of the order back (a full return); partial returns do not refund shipping;
* never more than paid minus earlier refunds.

Order status: once an order is DELIVERED, received returns move it to PARTIALLY_RETURNED
(some units back) or RETURNED (every unit back). An order still partly on its way keeps
its shipping status; it takes the returns into account when its last parcel arrives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from app.errors import Conflict
from app.orders.models import OrderStatus
from app.returns.models import ReturnStatus


class ReturnAction(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    RECEIVE = "RECEIVE"
    REFUND = "REFUND"


_R = ReturnStatus
TRANSITIONS: dict[ReturnAction, tuple[frozenset[ReturnStatus], ReturnStatus]] = {
    ReturnAction.APPROVE: (frozenset({_R.REQUESTED}), _R.APPROVED),
    ReturnAction.REJECT: (frozenset({_R.REQUESTED, _R.APPROVED}), _R.REJECTED),
    ReturnAction.RECEIVE: (frozenset({_R.APPROVED}), _R.RECEIVED),
    ReturnAction.REFUND: (frozenset({_R.RECEIVED}), _R.REFUNDED),
}
_DONE = {
    ReturnAction.APPROVE: "approved",
    ReturnAction.REJECT: "rejected",
    ReturnAction.RECEIVE: "received",
    ReturnAction.REFUND: "refunded",
}
_WHY = {
    (ReturnAction.RECEIVE, _R.REQUESTED): "The return is not approved yet: approve it first.",
    (ReturnAction.REFUND, _R.REQUESTED): "Nothing has been received yet: nothing to refund.",
    (ReturnAction.REFUND, _R.APPROVED): "Nothing has been received yet: nothing to refund.",
    (ReturnAction.APPROVE, _R.APPROVED): "The return is approved already.",
    (ReturnAction.REJECT, _R.REJECTED): "The return is rejected already.",
    (ReturnAction.RECEIVE, _R.RECEIVED): "The return has been received already.",
}


class IllegalReturnTransition(Conflict):
    """A step the return's status does not allow: CONFLICT in `userErrors` on `rma`."""

    def __init__(self, current: ReturnStatus, action: ReturnAction) -> None:
        message = _WHY.get((action, current)) or (
            f"A return that is {current.value} cannot be {_DONE[action]}."
        )
        super().__init__(
            message, field="rma", details={"status": current.value, "action": action.value}
        )
        self.current = current
        self.action = action


def status_after(current: ReturnStatus, action: ReturnAction) -> ReturnStatus:
    """The return's status once `action` happened, or IllegalReturnTransition."""
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise IllegalReturnTransition(current, action)
    return target


def committed_units(status: ReturnStatus, quantity: int, received: int | None) -> int:
    """Units of a return line that are no longer free to return: asked for while the
    return is open, what came back once received; nothing once rejected."""
    if status in (_R.REQUESTED, _R.APPROVED):
        return quantity
    if status in (_R.RECEIVED, _R.REFUNDED):
        return received or 0
    return 0


# -- eligibility ---------------------------------------------------------------------------


class Ineligibility(StrEnum):
    NOT_DELIVERED = "NOT_DELIVERED"
    WINDOW_CLOSED = "WINDOW_CLOSED"
    ALREADY_RETURNED = "ALREADY_RETURNED"


@dataclass(frozen=True)
class Parcel:
    """The units of one order line in one shipment, and how many of them are taken."""

    order_line_id: int
    shipment_id: int
    quantity: int
    delivered_at: datetime | None  # None: not delivered (yet)
    committed: int  # units returned or being returned


@dataclass(frozen=True)
class LineEligibility:
    order_line_id: int
    ordered: int
    delivered: int
    committed: int
    returnable: int
    returnable_until: datetime | None  # when the last returnable unit's window closes
    reason: Ineligibility | None  # why nothing can be returned (None if something can)


def window_closes(delivered_at: datetime, window_days: int) -> datetime:
    return delivered_at + timedelta(days=window_days)


def _free(parcel: Parcel, now: datetime, window_days: int) -> int:
    """Units of this parcel that may be returned right now."""
    if parcel.delivered_at is None or now >= window_closes(parcel.delivered_at, window_days):
        return 0
    return max(parcel.quantity - parcel.committed, 0)


def line_eligibility(
    order_line_id: int, ordered: int, parcels: list[Parcel], now: datetime, window_days: int
) -> LineEligibility:
    mine = [p for p in parcels if p.order_line_id == order_line_id]
    delivered = [p for p in mine if p.delivered_at is not None]
    returnable = sum(_free(p, now, window_days) for p in mine)
    open_until = [
        window_closes(p.delivered_at, window_days)
        for p in delivered
        if p.delivered_at is not None and _free(p, now, window_days) > 0
    ]
    delivered_units = sum(p.quantity for p in delivered)
    committed = sum(p.committed for p in mine)
    reason: Ineligibility | None = None
    if returnable == 0:
        if any(p.quantity > p.committed for p in delivered):
            reason = Ineligibility.WINDOW_CLOSED  # delivered, not returned, but too late
        elif delivered_units < ordered:
            reason = Ineligibility.NOT_DELIVERED
        else:
            reason = Ineligibility.ALREADY_RETURNED
    return LineEligibility(
        order_line_id=order_line_id,
        ordered=ordered,
        delivered=delivered_units,
        committed=committed,
        returnable=returnable,
        returnable_until=max(open_until) if open_until else None,
        reason=reason,
    )


def allocate(
    order_line_id: int, quantity: int, parcels: list[Parcel], now: datetime, window_days: int
) -> dict[int, int]:
    """{shipment id: units} for a request of `quantity` units of a line, taking first the
    parcels whose window closes soonest (so later requests keep the longest windows).
    The caller checked that enough units are returnable."""
    candidates = sorted(
        (p for p in parcels if p.order_line_id == order_line_id and _free(p, now, window_days)),
        key=lambda p: (p.delivered_at, p.shipment_id),
    )
    taken: dict[int, int] = {}
    left = quantity
    for parcel in candidates:
        if left == 0:
            break
        units = min(left, _free(parcel, now, window_days))
        taken[parcel.shipment_id] = units
        left -= units
    if left:
        raise ValueError("not enough returnable units")  # the caller checked: a bug
    return taken


# -- refunds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundQuote:
    items_minor: int
    shipping_minor: int
    amount_minor: int  # what is refunded: items + shipping, capped by what is left


def refund_quote(
    received: list[tuple[int, int]],
    *,
    ordered_units: int,
    units_refunded_before: int,
    order_shipping_minor: int,
    paid_minor: int,
    refunded_before_minor: int,
) -> RefundQuote:
    """`received`: (unit price, units received) per returned line."""
    items = sum(price * units for price, units in received)
    units = sum(units for _, units in received)
    completes = units > 0 and units_refunded_before + units >= ordered_units
    shipping = order_shipping_minor if completes else 0
    left = max(paid_minor - refunded_before_minor, 0)
    return RefundQuote(items, shipping, min(items + shipping, left))


# -- the order -----------------------------------------------------------------------------

_AFTER_DELIVERY = frozenset(
    {OrderStatus.DELIVERED, OrderStatus.PARTIALLY_RETURNED, OrderStatus.RETURNED}
)


def order_status_with_returns(
    current: OrderStatus, ordered_units: int, returned_units: int
) -> OrderStatus:
    """The order's status given the units received back. Only a delivered order moves."""
    if current not in _AFTER_DELIVERY or returned_units <= 0:
        return current
    if returned_units >= ordered_units:
        return OrderStatus.RETURNED
    return OrderStatus.PARTIALLY_RETURNED
