"""Batched loading: the SQL statements one request runs do not grow with the number of
orders, shipments or tracking events on the page (per-request DataLoaders)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event

from app.container import Services
from app.orders.models import Order
from app.orders.service import OrderView
from app.security.roles import Role
from app.settings import Settings
from tests.conftest import Account, GraphQLClient, Run, with_limits
from tests.support.carriers import ORDER_TRACKING, event, pack, ship

QUEUE_DEEP = """
query Queue($first: Int) {
  fulfillmentQueue(first: $first) {
    edges { node {
      code status
      lines { sku binLocation quantity }
      shipments { trackingNumber status lines { sku quantity } events { status occurredAt } }
    } }
  }
}
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Setting up dozens of shipments takes more code lookups than a minute's budget."""
    return with_limits(settings, lookups_per_user="1000/minute", lookups_per_ip="1000/minute")


@contextmanager
def counting(services: Services) -> Iterator[list[str]]:
    """Every SQL statement sent to the database while the block runs."""
    statements: list[str] = []

    def listen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement)

    # Events are the sync engine's (SQLAlchemy has no async events). The hot-path lookups
    # that `Database.fetch_*` send straight to the driver (the viewer's session check) do
    # not pass through it, so they are not counted.
    engine = services.db.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", listen)
    try:
        yield statements
    finally:
        sa_event.remove(engine, "before_cursor_execute", listen)


def split_shipped(
    run: Run[Any],
    services: Services,
    warehouse: Account,
    order: Order,
    events: int,
) -> None:
    """Mug packed, shipped and tracked; the T-shirt still to pick (it stays in the queue)."""
    tracking = f"B{order.code[:12]}"
    pack(run, services, warehouse, order, [("MUG-001", 1)])
    ship(run, services, warehouse, order, tracking=tracking)
    for n in range(events):
        when = datetime.now(UTC) - timedelta(minutes=60 - n)
        event(run, services, warehouse, order, tracking, "IN_TRANSIT", occurred_at=when)


def test_queue_page_statements_do_not_grow_with_page_size(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given 20 orders in the queue, each split-shipped with two tracking events
    warehouse = make_account(Role.WAREHOUSE)
    for _ in range(20):
        view = place_order(owner, [("MUG-001", 1), ("TEE-BLK-M", 1)])
        split_shipped(run, services, warehouse, view.order, events=2)
    # when the warehouse reads a page of 5 and a page of 20, with lines, shipments, events
    with counting(services) as small:
        five = gql.data(QUEUE_DEEP, {"first": 5}, token=warehouse.token)
    with counting(services) as large:
        twenty = gql.data(QUEUE_DEEP, {"first": 20}, token=warehouse.token)
    # then both pages are complete ...
    edges = twenty["fulfillmentQueue"]["edges"]
    assert len(five["fulfillmentQueue"]["edges"]) == 5 and len(edges) == 20
    assert all(len(edge["node"]["shipments"][0]["events"]) == 2 for edge in edges)
    assert all(edge["node"]["shipments"][0]["lines"] for edge in edges)
    # ... and cost the same number of statements
    print(f"\nfulfillmentQueue statements: first=5 -> {len(small)}, first=20 -> {len(large)}")
    assert len(small) == len(large)
    selects = [s for s in large if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 6, selects  # auth, page, lines, shipments, their lines, events


def test_order_tracking_statements_do_not_grow_with_shipments_and_events(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given one order with one shipment and one event, another with 3 shipments x 3 events
    warehouse = make_account(Role.WAREHOUSE)
    small_view = place_order(owner, [("MUG-001", 1)])
    pack(run, services, warehouse, small_view.order)
    ship(run, services, warehouse, small_view.order, tracking="SMALL-0001")
    event(run, services, warehouse, small_view.order, "SMALL-0001", "IN_TRANSIT")
    big_view = place_order(owner, [("MUG-001", 1), ("TEE-BLK-M", 1), ("LAMP-DESK", 1)])
    pack(run, services, warehouse, big_view.order)
    for n, sku in enumerate(["MUG-001", "TEE-BLK-M", "LAMP-DESK"]):
        ship(run, services, warehouse, big_view.order, tracking=f"BIG-000{n}", lines=[(sku, 1)])
        for m in range(3):
            when = datetime.now(UTC) - timedelta(minutes=30 - m)
            event(
                run,
                services,
                warehouse,
                big_view.order,
                f"BIG-000{n}",
                "IN_TRANSIT",
                occurred_at=when,
            )
    # when the owner reads each order with its shipments and events
    with counting(services) as small:
        one = gql.data(ORDER_TRACKING, {"code": small_view.order.code}, token=owner.token)
    with counting(services) as large:
        many = gql.data(ORDER_TRACKING, {"code": big_view.order.code}, token=owner.token)
    # then the answers are complete and cost the same number of statements
    assert len(one["order"]["shipments"]) == 1
    assert [len(s["events"]) for s in many["order"]["shipments"]] == [3, 3, 3]
    print(f"\norder(code) statements: 1x1 -> {len(small)}, 3x3 -> {len(large)}")
    assert len(small) == len(large)


def test_my_orders_shipments_are_batched_too(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given 2 and then 8 shipped orders in the owner's history
    warehouse = make_account(Role.WAREHOUSE)
    query = (
        "query H($first: Int) { myOrders(first: $first) { edges { node { "
        "code shipments { status events { status } } } } } }"
    )

    def add(n: int) -> None:
        for _ in range(n):
            view = place_order(owner, [("MUG-001", 1)])
            pack(run, services, warehouse, view.order)
            ship(run, services, warehouse, view.order, tracking=f"H{view.order.code[:12]}")
            event(run, services, warehouse, view.order, f"H{view.order.code[:12]}", "IN_TRANSIT")

    add(2)
    with counting(services) as small:
        gql.data(query, {"first": 10}, token=owner.token)
    add(6)
    # when the history is read with shipments and events
    with counting(services) as large:
        page = gql.data(query, {"first": 10}, token=owner.token)
    # then all eight are there, for the same number of statements as two
    assert len(page["myOrders"]["edges"]) == 8
    assert all(e["node"]["shipments"][0]["events"] for e in page["myOrders"]["edges"])
    assert len(small) == len(large)
