"""Delivery promises (issue 13, item 4): every delivered parcel and the delivered order
record `deliveredAt` (the carrier's time); the order keeps the estimate promised at
checkout (`promisedDelivery`) while `estimatedDelivery` follows the carriers; /metrics
counts deliveries on time and late by carrier; and `orderUpdates` sends STATUS_CHANGED
whenever the order's status moves, whatever moved it (a carrier's delivery through the
signed webhook, a cancellation, a return step).

Everything goes through the real app: the signed carrier webhook, GraphQL over HTTP, the
subscription over graphql-transport-ws, /metrics as scraped."""

from __future__ import annotations

import queue
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from starlette.testclient import TestClient

from app.container import Services
from app.metrics import carrier_label
from app.migrate import upgrade
from app.orders.service import OrderView
from app.security import codes
from tests.conftest import Account, GraphQLClient, Run, db_session
from tests.support.actors import make_cast
from tests.support.carriers import pack, ship, ship_in_parcels, webhook_event
from tests.support.returns import receive, request
from tests.support.rows import insert_row
from tests.support.subscriptions import connect, subscribe, wait_for_subscriber

ORDER = """
query Order($code: String!) {
  order(code: $code) {
    status estimatedDelivery promisedDelivery deliveredAt deliveredOnTime
    shipments { trackingNumber status estimatedDelivery deliveredAt }
  }
}
"""
SUBSCRIBE = "subscription S($code: String!) { orderUpdates(code: $code) { type order { status } } }"
CANCEL = "mutation C($code: String!) { cancelOrder(code: $code) { order { status } } }"


def order_of(gql: GraphQLClient, owner: Account, view: OrderView) -> dict[str, Any]:
    found: dict[str, Any] = gql.data(ORDER, {"code": view.order.code}, token=owner.token)["order"]
    return found


def deliveries(http: TestClient, carrier: str, outcome: str) -> float:
    """orders_api_deliveries_total{carrier, outcome} as /metrics shows it."""
    response = http.get("/metrics")
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            if s.name == "orders_api_deliveries_total" and s.labels == {
                "carrier": carrier,
                "outcome": outcome,
            }:
                return float(s.value)
    return 0.0


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


# -- deliveredAt -------------------------------------------------------------------------
def test_every_delivered_parcel_and_then_the_order_record_when_they_arrived(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
) -> None:
    # given an order shipped in two parcels
    view = place_order(owner, [("MUG-001", 1), ("TEE-BLK-M", 1)])
    first, second = ship_in_parcels(
        run, services, warehouse, view, [[("MUG-001", 1)], [("TEE-BLK-M", 1)]]
    )
    morning = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    noon = morning + timedelta(hours=3)
    # when the carrier delivers the first parcel
    webhook_event(http, first, "DELIVERED", occurred_at=morning)
    seen = order_of(gql, owner, view)
    # then that parcel records the carrier's time; the order is not delivered yet
    parcels = {s["trackingNumber"]: s for s in seen["shipments"]}
    assert parcels[first]["deliveredAt"] == iso(morning)
    assert parcels[second]["deliveredAt"] is None
    assert seen["status"] == "SHIPPED"
    assert seen["deliveredAt"] is None
    assert seen["deliveredOnTime"] is None
    # when the second parcel is delivered too
    webhook_event(http, second, "DELIVERED", occurred_at=noon)
    seen = order_of(gql, owner, view)
    # then every parcel has its time and the order is delivered with the last one
    parcels = {s["trackingNumber"]: s for s in seen["shipments"]}
    assert [parcels[t]["deliveredAt"] for t in (first, second)] == [iso(morning), iso(noon)]
    assert seen["status"] == "DELIVERED"
    assert seen["deliveredAt"] == iso(noon)
    assert seen["deliveredOnTime"] is True
    # and the database holds the same (the column, not a computed answer)
    with db_session(services) as session:
        stored = session.execute(
            text("SELECT delivered_at FROM orders WHERE id = :id"), {"id": view.order.id}
        ).scalar_one()
    assert stored is not None


def test_a_repeated_delivery_does_not_move_the_recorded_time(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
) -> None:
    view = place_order(owner, [("MUG-001", 1)])
    (tracking,) = ship_in_parcels(run, services, warehouse, view, [[("MUG-001", 1)]])
    delivered = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    webhook_event(http, tracking, "DELIVERED", occurred_at=delivered)
    # the carrier confirms the delivery again later (another event id)
    webhook_event(http, tracking, "DELIVERED", occurred_at=delivered + timedelta(hours=1))
    seen = order_of(gql, owner, view)
    assert seen["deliveredAt"] == iso(delivered)
    assert seen["shipments"][0]["deliveredAt"] == iso(delivered)


# -- the promise -------------------------------------------------------------------------
def test_the_promise_made_at_checkout_stays_when_a_delay_moves_the_estimate(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
) -> None:
    # given an order: at placement the promise is the estimate
    view = place_order(owner, [("MUG-001", 1)])
    placed = order_of(gql, owner, view)
    promise = placed["promisedDelivery"]
    assert promise == placed["estimatedDelivery"] == view.order.estimated_delivery.isoformat()
    (tracking,) = ship_in_parcels(run, services, warehouse, view, [[("MUG-001", 1)]])
    # when the carrier reports a delay that moves the estimate four days later
    later = date.fromisoformat(promise) + timedelta(days=4)
    webhook_event(http, tracking, "DELAYED", estimated_delivery=later)
    seen = order_of(gql, owner, view)
    # then the estimate moved, the promise did not
    assert seen["estimatedDelivery"] == later.isoformat()
    assert seen["shipments"][0]["estimatedDelivery"] == later.isoformat()
    assert seen["promisedDelivery"] == promise
    # and after the delivery both stay side by side with the actual date
    webhook_event(http, tracking, "DELIVERED")
    seen = order_of(gql, owner, view)
    assert seen["promisedDelivery"] == promise
    assert seen["deliveredAt"] is not None


# -- /metrics ----------------------------------------------------------------------------
def test_an_on_time_delivery_and_a_late_one_are_counted_by_carrier(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
) -> None:
    before = {o: deliveries(http, "UPS", o) for o in ("on_time", "late")}
    # given two orders shipped with UPS; the second was promised for three days ago
    # (placed a while back: its promise is in the past, as the row says)
    on_time = place_order(owner, [("MUG-001", 1)])
    late = place_order(owner, [("MUG-001", 1)])
    (first,) = ship_in_parcels(run, services, warehouse, on_time, [None], carrier="UPS")
    (second,) = ship_in_parcels(run, services, warehouse, late, [None], carrier="UPS")
    promised = datetime.now(UTC).date() - timedelta(days=3)
    with db_session(services) as session:
        session.execute(
            text("UPDATE orders SET promised_delivery = :d WHERE id = :id"),
            {"d": promised, "id": late.order.id},
        )
        session.commit()
    # when the first is delivered today (before its promise)
    webhook_event(http, first, "DELIVERED", carrier="UPS")
    # then one more on-time delivery for UPS, no late one
    assert deliveries(http, "UPS", "on_time") == before["on_time"] + 1
    assert deliveries(http, "UPS", "late") == before["late"]
    # when the second is delivered today, after its promise
    webhook_event(http, second, "DELIVERED", carrier="UPS")
    # then one late delivery for UPS
    assert deliveries(http, "UPS", "on_time") == before["on_time"] + 1
    assert deliveries(http, "UPS", "late") == before["late"] + 1
    seen = order_of(gql, owner, late)
    assert seen["promisedDelivery"] == promised.isoformat()
    assert seen["deliveredOnTime"] is False
    # a repeated delivery event counts nothing more
    webhook_event(http, second, "DELIVERED", carrier="UPS")
    assert deliveries(http, "UPS", "late") == before["late"] + 1


def test_an_unknown_carrier_is_counted_as_other(
    http: TestClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
) -> None:
    # the carrier's name is typed by staff: it never becomes a label of its own
    before = deliveries(http, "other", "on_time")
    view = place_order(owner, [("MUG-001", 1)])
    (tracking,) = ship_in_parcels(run, services, warehouse, view, [None], carrier="Pigeon Post 7")
    webhook_event(http, tracking, "DELIVERED", carrier="Pigeon Post 7")
    assert deliveries(http, "other", "on_time") == before + 1
    families = text_string_to_metric_families(http.get("/metrics").text)
    carriers = {
        s.labels["carrier"]
        for f in families
        for s in f.samples
        if s.name == "orders_api_deliveries_total"
    }
    assert "PIGEON POST 7" not in carriers
    assert carrier_label("dhl") == "DHL" and carrier_label("Pigeon Post 7") == "other"


# -- orderUpdates: STATUS_CHANGED whatever changed the status ----------------------------
def updates_until(stream: Any, count: int) -> list[tuple[str, str]]:
    """The next `count` updates as (type, order status)."""
    got = []
    for _ in range(count):
        message = stream.next()
        assert message["type"] == "next", message
        update = message["payload"]["data"]["orderUpdates"]
        got.append((update["type"], update["order"]["status"]))
    return got


def no_more_updates(stream: Any) -> None:
    with pytest.raises(queue.Empty):
        stream.next(timeout=0.5)


def test_a_delivery_through_the_webhook_reaches_subscribers_as_status_changed(
    http: TestClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
) -> None:
    view = place_order(owner, [("MUG-001", 1)])
    (tracking,) = ship_in_parcels(run, services, warehouse, view, [[("MUG-001", 1)]])
    with connect(http, owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, codes.display(view.order.code))
        wait_for_subscriber(services, view.order.id)
        # an event that does not change the order's status: TRACKING_EVENT only
        webhook_event(http, tracking, "OUT_FOR_DELIVERY")
        assert updates_until(stream, 1) == [("TRACKING_EVENT", "SHIPPED")]
        no_more_updates(stream)
        # the delivery moves the order SHIPPED -> DELIVERED: both kinds arrive
        webhook_event(http, tracking, "DELIVERED")
        assert updates_until(stream, 2) == [
            ("TRACKING_EVENT", "DELIVERED"),
            ("STATUS_CHANGED", "DELIVERED"),
        ]
        no_more_updates(stream)


def test_cancelling_gives_one_status_changed(
    http: TestClient,
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    place_order: Callable[..., OrderView],
) -> None:
    view = place_order(owner)
    with connect(http, owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, view.order.code)
        wait_for_subscriber(services, view.order.id)
        gql.data(CANCEL, {"code": view.order.code}, token=owner.token)
        assert updates_until(stream, 1) == [("STATUS_CHANGED", "CANCELLED")]
        no_more_updates(stream)


def test_a_received_return_that_moves_the_order_gives_status_changed(
    http: TestClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    other_customer: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
) -> None:
    cast = make_cast(owner, other_customer, make_account)
    view = place_order(owner, [("MUG-001", 2)])
    (tracking,) = ship_in_parcels(run, services, cast.warehouse, view, [[("MUG-001", 2)]])
    webhook_event(http, tracking, "DELIVERED")
    with connect(http, owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, view.order.code)
        wait_for_subscriber(services, view.order.id)
        # asking for a return does not change the order's status: RETURN_UPDATED only
        asked = request(run, services, owner, view, [("MUG-001", 1)])
        assert updates_until(stream, 1) == [("RETURN_UPDATED", "DELIVERED")]
        no_more_updates(stream)
        approved = run(services.returns.approve(cast.support.viewer, asked.request.rma_code, "1"))
        assert updates_until(stream, 1) == [("RETURN_UPDATED", "DELIVERED")]
        # receiving one of two units moves the order to PARTIALLY_RETURNED
        receive(run, services, cast, approved)
        assert updates_until(stream, 2) == [
            ("RETURN_UPDATED", "PARTIALLY_RETURNED"),
            ("STATUS_CHANGED", "PARTIALLY_RETURNED"),
        ]
        # (a refund on receipt may follow as RETURN_UPDATED: never a second STATUS_CHANGED)
        while True:
            try:
                message = stream.next(timeout=0.5)
            except queue.Empty:
                break
            assert message["payload"]["data"]["orderUpdates"]["type"] != "STATUS_CHANGED"


def test_an_unexpected_delivery_report_does_not_claim_a_status_change(
    http: TestClient,
    services: Services,
    run: Run[Any],
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., OrderView],
) -> None:
    # one parcel of two delivered: the order stays PARTIALLY_SHIPPED -> no STATUS_CHANGED
    view = place_order(owner, [("MUG-001", 1), ("TEE-BLK-M", 1)])
    pack(run, services, warehouse, view.order)
    tracking = ship(
        run, services, warehouse, view.order, lines=[("MUG-001", 1)]
    ).shipment.tracking_number
    with connect(http, owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, view.order.code)
        wait_for_subscriber(services, view.order.id)
        webhook_event(http, tracking, "DELIVERED")
        assert updates_until(stream, 1) == [("TRACKING_EVENT", "PARTIALLY_SHIPPED")]
        no_more_updates(stream)


# -- migration 0010 on existing data ------------------------------------------------------


def test_migration_0010_keeps_the_estimate_as_the_promise_and_dates_delivered_orders(
    tmp_path: Any,
) -> None:
    # given a database at 0009 with a delivered order (estimate moved to 28 Nov, parcels
    # delivered on the 27th and 29th) and an order still on its way
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    upgrade(url, "0009")
    with sqlite3.connect(path) as conn:
        user = insert_row(conn, "users", {})
        delivered = insert_row(
            conn,
            "orders",
            {"user_id": user, "status": "DELIVERED", "estimated_delivery": "2026-11-28"},
        )
        on_its_way = insert_row(
            conn,
            "orders",
            {"user_id": user, "status": "SHIPPED", "estimated_delivery": "2026-12-02"},
        )
        for order_id, when in (
            (delivered, "2026-11-27 09:00:00.000000"),
            (delivered, "2026-11-29 15:30:00.000000"),
            (on_its_way, None),
        ):
            insert_row(
                conn,
                "shipments",
                {
                    "order_id": order_id,
                    "status": "DELIVERED" if when else "IN_TRANSIT",
                    "delivered_at": when,
                },
            )
    # when it is migrated to head
    upgrade(url)
    with sqlite3.connect(path) as conn:
        rows = dict(
            (order_id, (promised, delivered_at))
            for order_id, promised, delivered_at in conn.execute(
                "SELECT id, promised_delivery, delivered_at FROM orders"
            )
        )
    # then the promise is the estimate they had, and the delivered order has its last
    # parcel's delivery time
    assert rows[delivered] == ("2026-11-28", "2026-11-29 15:30:00.000000")
    assert rows[on_its_way] == ("2026-12-02", None)
