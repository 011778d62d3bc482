"""order(code) { timeline }: the owner's history of an order (placed, paid, shipped,
delivered, return steps, refunds, cancellation), never who did it, behind the same door
as the order, and batch-loaded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from app.container import Services
from app.orders.service import OrderView
from app.security import codes
from tests.api.test_fulfilment_batching import counting
from tests.conftest import Account, GraphQLClient, Run, error_codes
from tests.support.actors import Cast, make_cast
from tests.support.carriers import strip
from tests.support.returns import IP, approve, deliver, receive, request

TIMELINE = """
query Timeline($code: String!) {
  order(code: $code) {
    timeline { kind at description amount { amount currency } rma carrier trackingNumber }
  }
}
"""
MY_TIMELINES = """
query { myOrders(first: 20) { edges { node { code timeline { kind at } } } } }
"""


@pytest.fixture
def cast(owner: Account, other_customer: Account, make_account: Callable[..., Account]) -> Cast:
    return make_cast(owner, other_customer, make_account)


def timeline(gql: GraphQLClient, token: str, code: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = gql.data(TIMELINE, {"code": code}, token=token)["order"][
        "timeline"
    ]
    return events


def test_the_owner_sees_the_whole_story_without_staff_identities(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given an order bought, shipped, delivered, and a mug returned and refunded
    view = place_order(cast.owner, [("MUG-001", 2)])
    tracking = deliver(run, services, cast.warehouse, view)
    ret = request(run, services, cast.owner, view, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    run(services.returns.refund(cast.admin.viewer, ret.request.rma_code, IP))
    # when the owner reads the timeline
    events = timeline(gql, cast.owner.token, view.order.code)
    # then every step is there, oldest first
    assert [e["kind"] for e in events] == [
        "PLACED",
        "PAID",
        "SHIPPED",
        "DELIVERED",
        "RETURN_REQUESTED",
        "RETURN_APPROVED",
        "RETURN_RECEIVED",
        "REFUNDED",
    ]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    by_kind = {e["kind"]: e for e in events}
    assert by_kind["PAID"]["amount"] == {"amount": view.order.total_minor, "currency": "EUR"}
    assert (by_kind["SHIPPED"]["carrier"], by_kind["SHIPPED"]["trackingNumber"]) == (
        "DHL",
        tracking,
    )
    assert by_kind["DELIVERED"]["trackingNumber"] == tracking
    rma = codes.display(ret.request.rma_code)
    assert {e["rma"] for e in events if e["kind"].startswith("RETURN_")} == {rma}
    assert by_kind["REFUNDED"]["rma"] == rma
    assert by_kind["REFUNDED"]["amount"]["amount"] == 1299
    assert by_kind["REFUNDED"]["description"] == f"Refund issued: EUR 12.99 (return {rma})"
    # then nothing says which staff member did what
    dumped = json.dumps(events)
    for staff in (cast.warehouse, cast.support, cast.admin):
        assert staff.email not in dumped
        assert staff.viewer.public_id not in dumped


def test_a_cancelled_order_shows_the_cancellation_and_the_refund(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given an order cancelled by its owner before shipping
    view = place_order(cast.owner)
    run(services.orders.cancel_order(cast.owner.viewer, view.order.code, IP))
    # when the owner reads the timeline
    events = timeline(gql, cast.owner.token, view.order.code)
    # then it ends with the cancellation and the full refund
    assert [e["kind"] for e in events] == ["PLACED", "PAID", "CANCELLED", "REFUNDED"]
    assert events[-1]["amount"]["amount"] == view.order.total_minor
    assert events[-1]["rma"] is None


def test_a_rejected_return_shows_as_rejected_without_a_refund(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given a delivered order whose return was rejected
    view = place_order(cast.owner)
    deliver(run, services, cast.warehouse, view)
    ret = request(run, services, cast.owner, view)
    run(services.returns.reject(cast.support.viewer, ret.request.rma_code, IP, "Used item"))
    # when the owner reads the timeline
    kinds = [e["kind"] for e in timeline(gql, cast.owner.token, view.order.code)]
    # then the rejection is the last step, and there is no refund
    assert kinds[-2:] == ["RETURN_REQUESTED", "RETURN_REJECTED"]
    assert "REFUNDED" not in kinds


def test_the_timeline_is_behind_the_order_door(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given a delivered order and a valid code that belongs to no order
    view = place_order(cast.owner)
    deliver(run, services, cast.warehouse, view)
    unknown = codes.generate()
    for who, token in cast.tokens().items():
        # when each kind of caller asks for the timeline of both
        real = gql(TIMELINE, {"code": view.order.code}, token=token)
        fake = gql(TIMELINE, {"code": unknown}, token=token)
        if who == "owner":
            # then the owner sees it
            assert [e["kind"] for e in real["data"]["order"]["timeline"]][:2] == [
                "PLACED",
                "PAID",
            ]
        else:
            # then nobody else can tell the order exists (staff included: a customer door)
            expected = "UNAUTHENTICATED" if who == "anonymous" else "ORDER_NOT_FOUND"
            assert error_codes(real) == [expected], who
            assert strip(real) == strip(fake), who


def test_timelines_of_a_page_of_orders_are_batch_loaded(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    def statements_for_history() -> int:
        with counting(services) as statements:
            gql.data(MY_TIMELINES, token=cast.owner.token)
        return len(statements)

    def delivered_with_a_return() -> None:
        view = place_order(cast.owner)
        deliver(run, services, cast.warehouse, view)
        request(run, services, cast.owner, view)

    # given two delivered orders, each with a return
    for _ in range(2):
        delivered_with_a_return()
    # when the owner reads the history with timelines
    few = statements_for_history()
    # given four more such orders
    for _ in range(4):
        delivered_with_a_return()
    # then reading six timelines takes as many statements as reading two
    assert statements_for_history() == few
    edges = gql.data(MY_TIMELINES, token=cast.owner.token)["myOrders"]["edges"]
    assert len(edges) == 6
    assert all(e["node"]["timeline"][-1]["kind"] == "RETURN_REQUESTED" for e in edges)
