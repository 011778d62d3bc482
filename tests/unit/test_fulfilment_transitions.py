"""The fulfilment status rules, as pure functions: every legal move, every illegal one,
shipments following their newest event, and estimates following the last parcel."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from app.orders.models import CANCELLABLE, OrderStatus
from app.shipments.models import ShipmentStatus
from app.shipments.transitions import (
    ALLOWED,
    IllegalTransition,
    Progress,
    Step,
    order_estimate,
    order_status_after,
    shipment_status_after,
)

S = OrderStatus


def progress(
    ordered: int = 3, packed: int = 0, shipped: int = 0, shipments: int = 0, delivered: int = 0
) -> Progress:
    return Progress(ordered, packed, shipped, shipments, delivered)


@pytest.mark.parametrize(
    ("current", "step", "after", "expected"),
    [
        # packing: part of it, then the rest; or all at once
        (S.PLACED, Step.PACK, progress(packed=1), S.PROCESSING),
        (S.PROCESSING, Step.PACK, progress(packed=3), S.PACKED),
        (S.PLACED, Step.PACK, progress(packed=3), S.PACKED),
        # shipping all, or a part (split shipment), then the rest
        (S.PACKED, Step.SHIP, progress(packed=3, shipped=3, shipments=1), S.SHIPPED),
        (S.PROCESSING, Step.SHIP, progress(packed=1, shipped=1, shipments=1), S.PARTIALLY_SHIPPED),
        (S.PACKED, Step.SHIP, progress(packed=3, shipped=2, shipments=1), S.PARTIALLY_SHIPPED),
        (S.PARTIALLY_SHIPPED, Step.PACK, progress(packed=3, shipped=1, shipments=1),
         S.PARTIALLY_SHIPPED),
        (S.PARTIALLY_SHIPPED, Step.SHIP, progress(packed=3, shipped=3, shipments=2), S.SHIPPED),
        # delivery: only once everything shipped and every shipment is delivered
        (S.SHIPPED, Step.DELIVER, progress(3, 3, 3, shipments=2, delivered=1), S.SHIPPED),
        (S.SHIPPED, Step.DELIVER, progress(3, 3, 3, shipments=2, delivered=2), S.DELIVERED),
        # an order in a single parcel is delivered with it
        (S.SHIPPED, Step.DELIVER, progress(3, 3, 3, shipments=1, delivered=1), S.DELIVERED),
        (S.PARTIALLY_SHIPPED, Step.DELIVER, progress(3, 1, 1, shipments=1, delivered=1),
         S.PARTIALLY_SHIPPED),
        # a late delivery confirmation leaves an order that is past delivery alone
        (S.DELIVERED, Step.DELIVER, progress(3, 3, 3, 1, 1), S.DELIVERED),
        (S.PARTIALLY_RETURNED, Step.DELIVER, progress(3, 3, 3, 1, 1), S.PARTIALLY_RETURNED),
        (S.RETURNED, Step.DELIVER, progress(3, 3, 3, 2, 1), S.RETURNED),
        # cancelling before anything ships
        (S.PLACED, Step.CANCEL, progress(), S.CANCELLED),
        (S.PROCESSING, Step.CANCEL, progress(packed=1), S.CANCELLED),
        (S.PACKED, Step.CANCEL, progress(packed=3), S.CANCELLED),
    ],
)  # fmt: skip
def test_legal_transitions(
    current: OrderStatus, step: Step, after: Progress, expected: OrderStatus
) -> None:
    assert order_status_after(current, step, after) is expected


ILLEGAL = [
    (S.PACKED, Step.PACK),
    (S.SHIPPED, Step.PACK),
    (S.DELIVERED, Step.PACK),
    (S.CANCELLED, Step.PACK),
    (S.PLACED, Step.SHIP),
    (S.SHIPPED, Step.SHIP),
    (S.DELIVERED, Step.SHIP),
    (S.CANCELLED, Step.SHIP),
    (S.RETURNED, Step.SHIP),
    (S.PLACED, Step.DELIVER),
    (S.PACKED, Step.DELIVER),
    (S.CANCELLED, Step.DELIVER),
    (S.PARTIALLY_SHIPPED, Step.CANCEL),
    (S.SHIPPED, Step.CANCEL),
    (S.DELIVERED, Step.CANCEL),
    (S.CANCELLED, Step.CANCEL),
]


@pytest.mark.parametrize(("current", "step"), ILLEGAL)
def test_illegal_transitions_are_conflicts_that_name_the_problem(
    current: OrderStatus, step: Step
) -> None:
    with pytest.raises(IllegalTransition) as refused:
        order_status_after(current, step, progress(3, 3, 3, 1, 1))
    assert refused.value.code.value == "CONFLICT"
    assert refused.value.user_error is True  # reported in userErrors, on the code
    assert refused.value.field == "code"
    assert refused.value.message.endswith(".")
    assert refused.value.details == {"status": current.value, "step": step.value}
    assert (refused.value.current, refused.value.step) == (current, step)


# Which step each status accepts, written out from the diagram of DESIGN §1.6-7 (not read
# from the module's table). A delivery confirmation arriving after the order was delivered
# or (partly) returned is accepted and changes nothing.
ACCEPTS = {
    S.PLACED: {Step.PACK, Step.CANCEL},
    S.PROCESSING: {Step.PACK, Step.SHIP, Step.CANCEL},
    S.PACKED: {Step.SHIP, Step.CANCEL},
    S.PARTIALLY_SHIPPED: {Step.PACK, Step.SHIP, Step.DELIVER},
    S.SHIPPED: {Step.DELIVER},
    S.DELIVERED: {Step.DELIVER},
    S.CANCELLED: set(),
    S.PARTIALLY_RETURNED: {Step.DELIVER},
    S.RETURNED: {Step.DELIVER},
}


def test_every_status_and_step_is_either_allowed_or_refused() -> None:
    # every (status, step) pair is accepted exactly when the diagram says so
    assert set(ACCEPTS) == set(OrderStatus)
    for status in OrderStatus:
        for step in Step:
            try:
                order_status_after(status, step, progress(3, 3, 3, 1, 1))
            except IllegalTransition:
                assert step not in ACCEPTS[status], (status, step)
            else:
                assert step in ACCEPTS[status], (status, step)


def test_an_order_without_a_shipment_is_never_delivered() -> None:
    # given counts that claim every unit shipped but name no shipment (nothing to deliver)
    after = progress(3, 3, 3, shipments=0, delivered=0)
    # then the order is not delivered by default
    assert order_status_after(S.SHIPPED, Step.DELIVER, after) is S.SHIPPED


def test_shipping_before_packing_says_to_pack_first() -> None:
    with pytest.raises(IllegalTransition, match="pack"):
        order_status_after(S.PLACED, Step.SHIP, progress())


def test_cancel_rule_matches_the_order_service() -> None:
    # cancelOrder (app/orders) and the transition table agree on "before shipment"
    assert ALLOWED[Step.CANCEL] == CANCELLABLE


T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SH = ShipmentStatus


@pytest.mark.parametrize(
    ("current", "last", "reported", "when", "expected"),
    [
        (SH.LABEL_CREATED, None, SH.IN_TRANSIT, T0, SH.IN_TRANSIT),
        (SH.IN_TRANSIT, T0, SH.OUT_FOR_DELIVERY, T0 + timedelta(hours=1), SH.OUT_FOR_DELIVERY),
        # an older event arriving late does not move the status back
        (SH.OUT_FOR_DELIVERY, T0, SH.IN_TRANSIT, T0 - timedelta(hours=1), SH.OUT_FOR_DELIVERY),
        # two events with the same time stamp: the one that arrives later wins
        (SH.IN_TRANSIT, T0, SH.OUT_FOR_DELIVERY, T0, SH.OUT_FOR_DELIVERY),
        (SH.OUT_FOR_DELIVERY, T0, SH.IN_TRANSIT, T0, SH.IN_TRANSIT),
        # trouble is reported like anything else
        (SH.IN_TRANSIT, T0, SH.EXCEPTION, T0 + timedelta(hours=1), SH.EXCEPTION),
        (SH.EXCEPTION, T0, SH.IN_TRANSIT, T0 + timedelta(hours=1), SH.IN_TRANSIT),
        # delivered is final, and a delivery counts even with an older time stamp
        (SH.DELIVERED, T0, SH.EXCEPTION, T0 + timedelta(hours=1), SH.DELIVERED),
        (SH.OUT_FOR_DELIVERY, T0, SH.DELIVERED, T0 - timedelta(minutes=5), SH.DELIVERED),
    ],
)
def test_shipment_status_follows_its_newest_event(
    current: ShipmentStatus,
    last: datetime | None,
    reported: ShipmentStatus,
    when: datetime,
    expected: ShipmentStatus,
) -> None:
    assert shipment_status_after(current, last, reported, when) is expected


D = date(2026, 12, 1)


def test_order_estimate_is_the_last_pending_parcel_once_everything_shipped() -> None:
    later, earlier = D + timedelta(days=3), D - timedelta(days=1)
    assert order_estimate(D, [earlier, later], everything_shipped=True) == later
    assert order_estimate(D, [earlier], everything_shipped=True) == earlier  # can move earlier


def test_order_estimate_keeps_the_promise_for_items_still_in_the_warehouse() -> None:
    earlier = D - timedelta(days=1)
    assert order_estimate(D, [earlier], everything_shipped=False) == D
    assert order_estimate(D, [D + timedelta(days=2)], everything_shipped=False) == D + timedelta(
        days=2
    )


def test_order_estimate_without_pending_parcels_stays() -> None:
    assert order_estimate(D, [], everything_shipped=True) == D
