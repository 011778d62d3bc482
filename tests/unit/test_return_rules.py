"""The pure rules of returns (app/returns/rules.py, app/returns/timeline.py): transitions,
what may be returned, how a request is spread over parcels, the refund amount, the order
status, and the timeline. No database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from app.errors import ErrorCode
from app.orders.models import Order, OrderStatus
from app.returns.models import ReturnRequest, ReturnStatus
from app.returns.rules import (
    TRANSITIONS,
    IllegalReturnTransition,
    Ineligibility,
    Parcel,
    ReturnAction,
    allocate,
    committed_units,
    line_eligibility,
    order_status_with_returns,
    refund_quote,
    status_after,
)
from app.returns.timeline import TimelineEntry, TimelineKind, build_timeline
from app.shipments.models import Shipment

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
WINDOW = 30

# -- transitions ---------------------------------------------------------------------------

LEGAL = {
    (ReturnStatus.REQUESTED, ReturnAction.APPROVE): ReturnStatus.APPROVED,
    (ReturnStatus.REQUESTED, ReturnAction.REJECT): ReturnStatus.REJECTED,
    (ReturnStatus.APPROVED, ReturnAction.REJECT): ReturnStatus.REJECTED,
    (ReturnStatus.APPROVED, ReturnAction.RECEIVE): ReturnStatus.RECEIVED,
    (ReturnStatus.RECEIVED, ReturnAction.REFUND): ReturnStatus.REFUNDED,
}


@pytest.mark.parametrize("status", list(ReturnStatus))
@pytest.mark.parametrize("action", list(ReturnAction))
def test_every_status_and_action_pair_is_legal_or_refused(
    status: ReturnStatus, action: ReturnAction
) -> None:
    # given a return in `status`, when `action` is tried
    if (status, action) in LEGAL:
        # then a legal step lands where the diagram says
        assert status_after(status, action) is LEGAL[(status, action)]
    else:
        # then anything else is a CONFLICT on the RMA, naming the status and the step
        with pytest.raises(IllegalReturnTransition) as refused:
            status_after(status, action)
        assert refused.value.code is ErrorCode.CONFLICT
        assert refused.value.field == "rma"
        assert refused.value.details == {"status": status.value, "action": action.value}
        assert (refused.value.current, refused.value.action) == (status, action)


def test_the_transition_table_is_the_documented_one() -> None:
    # given the table, then it allows exactly the five documented moves
    pairs = {(s, a) for a, (sources, _) in TRANSITIONS.items() for s in sources}
    assert pairs == set(LEGAL)


def test_refusals_explain_themselves() -> None:
    # when the warehouse receives a return nobody approved
    with pytest.raises(IllegalReturnTransition) as refused:
        status_after(ReturnStatus.REQUESTED, ReturnAction.RECEIVE)
    # then the message says what to do
    assert refused.value.message == "The return is not approved yet: approve it first."
    # when a refunded return is approved
    with pytest.raises(IllegalReturnTransition) as late:
        status_after(ReturnStatus.REFUNDED, ReturnAction.APPROVE)
    assert late.value.message == "A return that is REFUNDED cannot be approved."


@pytest.mark.parametrize(
    ("status", "quantity", "received", "taken"),
    [
        (ReturnStatus.REQUESTED, 2, None, 2),
        (ReturnStatus.APPROVED, 2, None, 2),
        (ReturnStatus.RECEIVED, 2, 1, 1),
        # received with nothing in the box (or not counted): nothing is taken
        (ReturnStatus.RECEIVED, 2, 0, 0),
        (ReturnStatus.RECEIVED, 2, None, 0),
        (ReturnStatus.REFUNDED, 3, None, 0),
        (ReturnStatus.REFUNDED, 2, 2, 2),
        (ReturnStatus.REJECTED, 2, None, 0),
    ],
)
def test_units_taken_by_a_return_follow_its_status(
    status: ReturnStatus, quantity: int, received: int | None, taken: int
) -> None:
    # given a return line of `quantity` units, then the units it takes from the free ones
    assert committed_units(status, quantity, received) == taken


# -- eligibility ---------------------------------------------------------------------------


def parcel(
    quantity: int, delivered_days_ago: float | None, committed: int = 0, shipment: int = 1
) -> Parcel:
    delivered = None if delivered_days_ago is None else NOW - timedelta(days=delivered_days_ago)
    return Parcel(1, shipment, quantity, delivered, committed)


def test_delivered_units_within_the_window_can_be_returned() -> None:
    # given two units delivered ten days ago, one already being returned
    result = line_eligibility(1, 2, [parcel(2, 10, committed=1)], NOW, WINDOW)
    # then one can be returned, until thirty days after delivery
    assert (result.delivered, result.committed, result.returnable) == (2, 1, 1)
    assert (result.order_line_id, result.ordered) == (1, 2)
    assert result.reason is None
    assert result.returnable_until == NOW + timedelta(days=20)


@pytest.mark.parametrize(
    ("parcels", "ordered", "reason"),
    [
        ([], 2, Ineligibility.NOT_DELIVERED),  # not shipped
        ([parcel(2, None)], 2, Ineligibility.NOT_DELIVERED),  # on its way
        ([parcel(2, 30)], 2, Ineligibility.WINDOW_CLOSED),  # the window is [delivery, +30d)
        ([parcel(2, 5, committed=2)], 2, Ineligibility.ALREADY_RETURNED),
        # one unit returned, the other still on its way: wait for it
        ([parcel(1, 5, committed=1), parcel(1, None, shipment=2)], 2, Ineligibility.NOT_DELIVERED),
        # one unit returned, the other delivered too long ago
        ([parcel(1, 5, 1), parcel(1, 40, shipment=2)], 2, Ineligibility.WINDOW_CLOSED),
    ],
)
def test_when_nothing_can_be_returned_the_reason_says_why(
    parcels: list[Parcel], ordered: int, reason: Ineligibility
) -> None:
    result = line_eligibility(1, ordered, parcels, NOW, WINDOW)
    assert result.returnable == 0
    assert result.reason is reason
    assert result.returnable_until is None


def test_each_parcel_has_its_own_window() -> None:
    # given one unit delivered 40 days ago and one yesterday, the recent one returned
    parcels = [parcel(1, 40, shipment=1), parcel(1, 1, committed=1, shipment=2)]
    # then the old unit cannot ride on the recent parcel's window
    result = line_eligibility(1, 2, parcels, NOW, WINDOW)
    assert result.returnable == 0 and result.reason is Ineligibility.WINDOW_CLOSED


def test_a_request_takes_the_parcels_whose_window_closes_first() -> None:
    # given three parcels of one line: 20, 5 and 45 days old (the last one is too old)
    parcels = [
        parcel(2, 5, shipment=7),
        parcel(1, 20, shipment=3),
        parcel(4, 45, shipment=9),
    ]
    # when two units are asked for
    taken = allocate(1, 2, parcels, NOW, WINDOW)
    # then the oldest returnable parcel goes first, and the expired one not at all
    assert taken == {3: 1, 7: 1}
    with pytest.raises(ValueError, match=r"^not enough returnable units$"):
        allocate(1, 4, parcels, NOW, WINDOW)


def test_a_request_met_by_the_first_parcel_leaves_the_others_untouched() -> None:
    # given two returnable parcels of one line, two units each
    parcels = [parcel(2, 5, shipment=7), parcel(2, 20, shipment=3)]
    # when two units are asked for
    taken = allocate(1, 2, parcels, NOW, WINDOW)
    # then the parcel whose window closes first gives both; the other is not in the answer
    assert taken == {3: 2}
    # and three units take the rest from the next parcel
    assert allocate(1, 3, parcels, NOW, WINDOW) == {3: 2, 7: 1}


def test_allocation_skips_parcels_of_other_lines_and_units_already_taken() -> None:
    other_line = Parcel(2, 5, 3, NOW - timedelta(days=1), 0)
    parcels = [other_line, parcel(3, 10, committed=2, shipment=8), parcel(2, 12, shipment=4)]
    assert allocate(1, 3, parcels, NOW, WINDOW) == {4: 2, 8: 1}


# -- refunds -------------------------------------------------------------------------------


def test_a_partial_return_refunds_the_items_only() -> None:
    quote = refund_quote(
        [(1299, 1)],
        ordered_units=3,
        units_refunded_before=0,
        order_shipping_minor=495,
        paid_minor=2598 + 2499 + 495,
        refunded_before_minor=0,
    )
    assert (quote.items_minor, quote.shipping_minor, quote.amount_minor) == (1299, 0, 1299)


def test_the_refund_that_completes_the_return_of_the_order_adds_the_shipping() -> None:
    # given two of three units refunded before, and the last one coming back now
    quote = refund_quote(
        [(2499, 1)],
        ordered_units=3,
        units_refunded_before=2,
        order_shipping_minor=495,
        paid_minor=2598 + 2499 + 495,
        refunded_before_minor=2598,
    )
    # then its price and the shipping fee are refunded
    assert (quote.items_minor, quote.shipping_minor, quote.amount_minor) == (2499, 495, 2994)


def test_a_refund_is_capped_by_what_was_paid_minus_earlier_refunds() -> None:
    quote = refund_quote(
        [(1299, 2)],
        ordered_units=2,
        units_refunded_before=0,
        order_shipping_minor=495,
        paid_minor=3093,
        refunded_before_minor=3000,
    )
    assert quote.amount_minor == 93
    nothing_left = refund_quote(
        [(1299, 1)],
        ordered_units=2,
        units_refunded_before=0,
        order_shipping_minor=0,
        paid_minor=2598,
        refunded_before_minor=2598,
    )
    assert nothing_left.amount_minor == 0


def test_nothing_received_refunds_nothing_not_even_shipping() -> None:
    quote = refund_quote(
        [(1299, 0)],
        ordered_units=1,
        units_refunded_before=1,
        order_shipping_minor=495,
        paid_minor=1794,
        refunded_before_minor=0,
    )
    assert quote.amount_minor == 0


# -- the order -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "returned", "after"),
    [
        (OrderStatus.DELIVERED, 0, OrderStatus.DELIVERED),
        (OrderStatus.DELIVERED, 1, OrderStatus.PARTIALLY_RETURNED),
        (OrderStatus.DELIVERED, 3, OrderStatus.RETURNED),
        (OrderStatus.PARTIALLY_RETURNED, 3, OrderStatus.RETURNED),
        (OrderStatus.SHIPPED, 1, OrderStatus.SHIPPED),  # still on its way: shipping rules
        (OrderStatus.PARTIALLY_SHIPPED, 1, OrderStatus.PARTIALLY_SHIPPED),
    ],
)
def test_the_order_status_reflects_the_units_back(
    current: OrderStatus, returned: int, after: OrderStatus
) -> None:
    assert order_status_with_returns(current, 3, returned) is after


# -- the timeline --------------------------------------------------------------------------


def _order(**values: object) -> Order:
    base: dict[str, object] = {
        "id": 1,
        "code": "0" * 16,
        "user_id": 1,
        "currency": "EUR",
        "subtotal_minor": 2598,
        "shipping_minor": 495,
        "tax_minor": 516,
        "total_minor": 3093,
        "ship_name": "A",
        "ship_line1": "B",
        "ship_city": "C",
        "ship_postal_code": "10115",
        "ship_country": "DE",
        "payment_brand": "VISA",
        "payment_last4": "4242",
        "payment_reference": "ch_1",
        "idempotency_key": "k",
        "request_fingerprint": "f",
        "estimated_delivery": NOW.date(),
        "placed_at": NOW,
    }
    base.update(values)
    return Order(**base)  # type: ignore[arg-type]


def test_the_timeline_is_in_time_order_with_ties_in_step_order() -> None:
    # given an order shipped and delivered, with a return refunded
    order = _order(refunded_minor=1299)
    shipment = Shipment(
        id=1,
        order_id=1,
        carrier="DHL",
        tracking_number="T1",
        shipped_at=NOW + timedelta(days=1),
        delivered_at=NOW + timedelta(days=2),
    )
    ret = ReturnRequest(
        id=1,
        rma_code="R" * 16,
        order_id=1,
        status="REFUNDED",
        reason="DAMAGED",
        currency="EUR",
        refund_minor=1299,
        requested_at=NOW + timedelta(days=3),
        approved_at=NOW + timedelta(days=3),  # the same instant as the request
        received_at=NOW + timedelta(days=5),
        refunded_at=NOW + timedelta(days=5),
    )
    # when the timeline is built
    entries = build_timeline(order, [shipment], [ret])
    # then the steps come oldest first, and same-instant steps in the order they happen
    assert [e.kind for e in entries] == [
        TimelineKind.PLACED,
        TimelineKind.PAID,
        TimelineKind.SHIPPED,
        TimelineKind.DELIVERED,
        TimelineKind.RETURN_REQUESTED,
        TimelineKind.RETURN_APPROVED,
        TimelineKind.RETURN_RECEIVED,
        TimelineKind.REFUNDED,
    ]
    assert entries[-1].amount_minor == 1299 and entries[-1].rma_code == "R" * 16


def test_a_delivery_stamped_by_the_carrier_never_comes_before_its_shipping() -> None:
    # given a carrier whose clock (to the second) puts the delivery before the shipping
    shipped = NOW + timedelta(seconds=1, microseconds=500_000)
    carrier_says = NOW + timedelta(seconds=1)
    shipment = Shipment(
        id=1,
        order_id=1,
        carrier="DHL",
        tracking_number="T1",
        shipped_at=shipped,
        delivered_at=carrier_says,
    )
    # when the timeline is built
    entries = build_timeline(_order(), [shipment], [])
    # then the delivery follows the shipping, still showing the carrier's time
    assert [e.kind for e in entries][-2:] == [TimelineKind.SHIPPED, TimelineKind.DELIVERED]
    assert entries[-1].at == carrier_says


def test_a_cancellation_refund_is_what_was_refunded_beyond_returns() -> None:
    order = _order(status="CANCELLED", cancelled_at=NOW + timedelta(hours=1), refunded_minor=3093)
    entries = build_timeline(order, [], [])
    assert [(e.kind, e.amount_minor) for e in entries] == [
        (TimelineKind.PLACED, None),
        (TimelineKind.PAID, 3093),
        (TimelineKind.CANCELLED, None),
        (TimelineKind.REFUNDED, 3093),
    ]
    assert {e.currency for e in entries} == {"EUR"}


def test_a_refund_on_its_way_is_not_shown_until_the_provider_confirmed_it() -> None:
    # given a cancellation and a received return whose refunds are still PENDING: neither
    # the order's refunded amount nor the return's status has moved yet
    cancelled = _order(status="CANCELLED", cancelled_at=NOW + timedelta(hours=1))
    received = ReturnRequest(
        id=1,
        rma_code="R" * 16,
        order_id=1,
        status="RECEIVED",
        reason="DAMAGED",
        currency="EUR",
        requested_at=NOW + timedelta(days=3),
        approved_at=NOW + timedelta(days=3),
        received_at=NOW + timedelta(days=5),
    )
    # when their timelines are built
    kinds = [e.kind for e in build_timeline(cancelled, [], [])]
    kinds += [e.kind for e in build_timeline(_order(), [], [received])]
    # then neither shows a refund yet
    assert TimelineKind.CANCELLED in kinds and TimelineKind.RETURN_RECEIVED in kinds
    assert TimelineKind.REFUNDED not in kinds


def test_a_timeline_entry_has_no_place_for_staff_identities() -> None:
    names = {f.name for f in dataclasses.fields(TimelineEntry)}
    assert names == {
        "kind",
        "at",
        "currency",
        "amount_minor",
        "rma_code",
        "carrier",
        "tracking_number",
    }


def test_every_entry_carries_its_currency_parcel_return_and_amount() -> None:
    # given an order in USD: a parcel shipped and delivered, a return refunded, then a
    # second parcel shipped after the return was asked for
    order = _order(currency="USD", refunded_minor=1299)
    first = Shipment(
        id=1,
        order_id=1,
        carrier="DHL",
        tracking_number="T1",
        shipped_at=NOW + timedelta(days=1),
        delivered_at=NOW + timedelta(days=2),
    )
    second = Shipment(
        id=2, order_id=1, carrier="UPS", tracking_number="T2", shipped_at=NOW + timedelta(days=4)
    )
    ret = ReturnRequest(
        id=1,
        rma_code="R" * 16,
        order_id=1,
        status="REFUNDED",
        reason="DAMAGED",
        currency="USD",
        refund_minor=1299,
        requested_at=NOW + timedelta(days=3),
        received_at=NOW + timedelta(days=5),
        refunded_at=NOW + timedelta(days=6),
    )
    # when the timeline is built
    entries = build_timeline(order, [first, second], [ret])
    # then each entry is exactly what happened, oldest first (not grouped by kind)
    k, r = TimelineKind, "R" * 16
    assert entries == [
        TimelineEntry(k.PLACED, NOW, "USD"),
        TimelineEntry(k.PAID, NOW, "USD", 3093),
        TimelineEntry(
            k.SHIPPED, NOW + timedelta(days=1), "USD", carrier="DHL", tracking_number="T1"
        ),
        TimelineEntry(
            k.DELIVERED, NOW + timedelta(days=2), "USD", carrier="DHL", tracking_number="T1"
        ),
        TimelineEntry(k.RETURN_REQUESTED, NOW + timedelta(days=3), "USD", rma_code=r),
        TimelineEntry(
            k.SHIPPED, NOW + timedelta(days=4), "USD", carrier="UPS", tracking_number="T2"
        ),
        TimelineEntry(k.RETURN_RECEIVED, NOW + timedelta(days=5), "USD", rma_code=r),
        TimelineEntry(k.REFUNDED, NOW + timedelta(days=6), "USD", 1299, r),
    ]


def _refunded_return(rid: int, refund: int | None, status: str = "REFUNDED") -> ReturnRequest:
    return ReturnRequest(
        id=rid,
        rma_code=f"{rid}" * 16,
        order_id=1,
        status=status,
        reason="DAMAGED",
        currency="EUR",
        refund_minor=refund,
        requested_at=NOW + timedelta(hours=rid),
        refunded_at=NOW + timedelta(hours=rid, minutes=30),
    )


def test_the_cancellation_refund_is_the_rest_after_every_return_refund() -> None:
    # given (as the rules compute it, whatever led there) two refunded returns of 1299 and
    # 500, one REFUNDED without an amount, one RECEIVED whose refund is not confirmed yet,
    # and an order cancelled with 1800 refunded in all
    order = _order(cancelled_at=NOW + timedelta(days=1), refunded_minor=1800)
    returns = [
        _refunded_return(1, 1299),
        _refunded_return(2, 500),
        _refunded_return(3, None),
        _refunded_return(4, 700, status="RECEIVED"),
    ]
    # when the timeline is built
    refunds = [
        (e.rma_code, e.amount_minor)
        for e in build_timeline(order, [], returns)
        if e.kind is TimelineKind.REFUNDED
    ]
    # then each confirmed return refund is shown with its amount (none: 0), and the
    # cancellation's refund is the one unit left over
    assert refunds == [("1" * 16, 1299), ("2" * 16, 500), ("3" * 16, 0), (None, 1)]
