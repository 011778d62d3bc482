"""Tracking events move shipments and orders forward: the owner sees them on
order(code) { shipments { events } }, the order is DELIVERED once every shipment is, a late
or stale event never moves a status back, estimates follow the carrier, and live
subscribers hear about each event."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from app.container import Services
from app.orders.service import OrderView
from app.security import codes
from app.security.roles import Role
from tests.conftest import Account, GraphQLClient, Run, error_codes
from tests.support.carriers import ADD_EVENT, ORDER_TRACKING, event, order_status, pack, ship


def at(minutes_ago: int) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes_ago)


def test_owner_sees_shipments_and_events_newest_first(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    other_customer: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given a shipped order with two events from the carrier
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner, [("MUG-001", 2)])
    pack(run, services, warehouse, view.order)
    ship(run, services, warehouse, view.order, tracking="SEEN-0001")
    event(run, services, warehouse, view.order, "SEEN-0001", "IN_TRANSIT", occurred_at=at(60))
    event(run, services, warehouse, view.order, "SEEN-0001", "OUT_FOR_DELIVERY", occurred_at=at(5))
    # when the owner looks the order up
    order = gql.data(ORDER_TRACKING, {"code": view.order.code}, token=owner.token)["order"]
    # then the shipment shows carrier, tracking number, status, items and events
    assert order["status"] == "SHIPPED"
    [shipment] = order["shipments"]
    assert (shipment["carrier"], shipment["trackingNumber"]) == ("DHL", "SEEN-0001")
    assert shipment["status"] == "OUT_FOR_DELIVERY"
    assert shipment["lines"] == [{"sku": "MUG-001", "quantity": 2}]
    assert [e["status"] for e in shipment["events"]] == ["OUT_FOR_DELIVERY", "IN_TRANSIT"]
    assert shipment["events"][0]["location"] == "Hub"
    assert shipment["events"][0]["occurredAt"].endswith("+00:00")
    # then another customer still gets the unknown-code answer
    body = gql(ORDER_TRACKING, {"code": view.order.code}, token=other_customer.token)
    assert error_codes(body) == ["ORDER_NOT_FOUND"]


def test_order_is_delivered_only_when_every_shipment_is(
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given an order shipped in two parcels
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner, [("MUG-001", 1), ("LAMP-DESK", 1)])
    pack(run, services, warehouse, view.order)
    ship(run, services, warehouse, view.order, tracking="SPLIT-A", lines=[("MUG-001", 1)])
    ship(run, services, warehouse, view.order, tracking="SPLIT-B", lines=[("LAMP-DESK", 1)])
    assert order_status(services, view.order) == "SHIPPED"
    # when the first parcel is delivered
    event(run, services, warehouse, view.order, "SPLIT-A", "DELIVERED")
    # then the order is still SHIPPED
    assert order_status(services, view.order) == "SHIPPED"
    # when the second parcel is delivered too
    event(run, services, warehouse, view.order, "SPLIT-B", "DELIVERED")
    # then the order is DELIVERED
    assert order_status(services, view.order) == "DELIVERED"


def test_a_delivered_partial_shipment_leaves_the_order_partially_shipped(
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given an order of which only the mug shipped
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner, [("MUG-001", 1), ("LAMP-DESK", 1)])
    pack(run, services, warehouse, view.order, [("MUG-001", 1)])
    ship(run, services, warehouse, view.order, tracking="HALF-0001")
    # when that parcel is delivered
    event(run, services, warehouse, view.order, "HALF-0001", "DELIVERED")
    # then the order is not delivered: the lamp has not even left
    assert order_status(services, view.order) == "PARTIALLY_SHIPPED"


def test_late_events_do_not_move_a_status_back_and_delivered_is_final(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given a shipment out for delivery
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner)
    pack(run, services, warehouse, view.order)
    ship(run, services, warehouse, view.order, tracking="LATE-0001")
    event(run, services, warehouse, view.order, "LATE-0001", "OUT_FOR_DELIVERY", occurred_at=at(10))
    # when an older IN_TRANSIT event arrives late
    event(run, services, warehouse, view.order, "LATE-0001", "IN_TRANSIT", occurred_at=at(120))
    # then it is kept in the history, and the shipment stays OUT_FOR_DELIVERY
    order = gql.data(ORDER_TRACKING, {"code": view.order.code}, token=owner.token)["order"]
    assert order["shipments"][0]["status"] == "OUT_FOR_DELIVERY"
    assert len(order["shipments"][0]["events"]) == 2
    # when it is delivered, and an EXCEPTION is reported afterwards
    event(run, services, warehouse, view.order, "LATE-0001", "DELIVERED", occurred_at=at(5))
    event(run, services, warehouse, view.order, "LATE-0001", "EXCEPTION", occurred_at=at(1))
    # then shipment and order stay DELIVERED, with the delivery time of the DELIVERED event
    order = gql.data(ORDER_TRACKING, {"code": view.order.code}, token=owner.token)["order"]
    shipment = order["shipments"][0]
    assert (shipment["status"], order["status"]) == ("DELIVERED", "DELIVERED")
    delivered_at = datetime.fromisoformat(shipment["deliveredAt"])
    assert abs(delivered_at - at(5)) < timedelta(minutes=1)
    assert shipment["events"][0]["status"] == "EXCEPTION"  # newest first, kept


def test_a_delay_moves_shipment_and_order_estimates(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given a shipped order
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner)
    pack(run, services, warehouse, view.order)
    ship(run, services, warehouse, view.order, tracking="SLOW-0001")
    later = date.today() + timedelta(days=12)
    # when the carrier reports a delay with a new estimate
    payload = gql.data(
        ADD_EVENT,
        {
            "code": view.order.code,
            "carrier": "DHL",
            "tracking": "SLOW-0001",
            "status": "DELAYED",
            "estimate": later.isoformat(),
        },
        token=warehouse.token,
    )["addTrackingEvent"]
    # then the shipment and the order carry the new estimate
    assert payload["shipment"]["status"] == "DELAYED"
    assert payload["shipment"]["estimatedDelivery"] == later.isoformat()
    order = gql.data(ORDER_TRACKING, {"code": view.order.code}, token=owner.token)["order"]
    assert order["estimatedDelivery"] == later.isoformat()


SUBSCRIBE = """
subscription S($code: String!) {
  orderUpdates(code: $code) {
    type
    order { status shipments { status events { status } } }
  }
}
"""


def test_live_subscribers_hear_tracking_events(
    http: TestClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given a shipped order and its owner following it live
    warehouse = make_account(Role.WAREHOUSE)
    view = place_order(owner)
    pack(run, services, warehouse, view.order)
    ship(run, services, warehouse, view.order, tracking="LIVE-0001")
    inbox: queue.Queue[Any] = queue.Queue()
    with http.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {owner.token}"}}
        )
        assert ws.receive_json()["type"] == "connection_ack"
        code = codes.display(view.order.code)
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": SUBSCRIBE, "variables": {"code": code}},
            }
        )

        def pump() -> None:
            try:
                while True:
                    inbox.put(ws.receive_json())
            except Exception as exc:  # the socket closed
                inbox.put(exc)

        threading.Thread(target=pump, daemon=True).start()
        # when the carrier's event is recorded (after the subscription is live)
        deadline = datetime.now(UTC) + timedelta(seconds=5)
        while services.events.subscriber_count(f"order:{view.order.id}") == 0:  # type: ignore[attr-defined]
            assert datetime.now(UTC) < deadline, "subscription never started"
            time.sleep(0.01)
        event(run, services, warehouse, view.order, "LIVE-0001", "IN_TRANSIT")
        # then the owner receives it, with the shipment's new status and the event
        message = inbox.get(timeout=5)
        assert message["type"] == "next", message
        update = message["payload"]["data"]["orderUpdates"]
        assert update["type"] == "TRACKING_EVENT"
        assert update["order"]["shipments"] == [
            {"status": "IN_TRANSIT", "events": [{"status": "IN_TRANSIT"}]}
        ]
        ws.send_json({"id": "1", "type": "complete"})
