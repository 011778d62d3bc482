"""Shared by the fulfilment tests: the GraphQL documents and short-cuts that drive an order
through the warehouse with the real services, and a carrier's event through the real,
signed webhook. The short-cuts that call a service take the `run` fixture first (services
are async, bound to the app's event loop)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from starlette.testclient import TestClient

from app.container import Services
from app.orders.models import Order
from app.orders.service import OrderView
from app.settings import DEV_CARRIER_SECRET
from app.shipments.inputs import EventInput, LineRequest, Place
from app.shipments.service import EventResult, ShipResult
from scripts.carrier_client import event_body, signed_headers
from tests.conftest import Account, Run, db_session

QUEUE = """
query Queue($first: Int, $after: String) {
  fulfillmentQueue(first: $first, after: $after) {
    edges { cursor node { code status lines { sku binLocation quantity } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

PICK_LIST = """
query Pick($code: String!) {
  pickList(code: $code) {
    code status
    shippingAddress { name line1 city postalCode country }
    lines { sku name quantity orderedQuantity packedQuantity binLocation }
  }
}
"""

PACK = """
mutation Pack($code: String!, $scans: [String!]!, $lines: [FulfillmentLineInput!]) {
  packOrder(code: $code, scannedSkus: $scans, lines: $lines) {
    order { code status }
    packed { sku quantity }
    missing { sku quantity }
    unexpected { sku quantity }
    userErrors { field message code }
  }
}
"""

SHIP = """
mutation Ship(
  $code: String!, $carrier: String!, $tracking: String!, $lines: [FulfillmentLineInput!]
) {
  shipOrder(code: $code, carrier: $carrier, trackingNumber: $tracking, lines: $lines) {
    order { code status }
    shipment { carrier trackingNumber status estimatedDelivery lines { sku quantity } }
    userErrors { field message code }
  }
}
"""

ADD_EVENT = """
mutation Event(
  $code: String!, $carrier: String!, $tracking: String!, $status: ShipmentStatus!,
  $occurredAt: DateTime, $location: String! = "", $eventId: String, $estimate: Date
) {
  addTrackingEvent(
    code: $code, carrier: $carrier, trackingNumber: $tracking, status: $status,
    occurredAt: $occurredAt, location: $location, eventId: $eventId,
    estimatedDelivery: $estimate
  ) {
    recorded
    shipment { status estimatedDelivery deliveredAt events { status location } }
    userErrors { field message code }
  }
}
"""

ORDER_TRACKING = """
query Tracking($code: String!) {
  order(code: $code) {
    code status estimatedDelivery
    shipments {
      carrier trackingNumber status estimatedDelivery shippedAt deliveredAt
      lines { sku quantity }
      events { status location description occurredAt }
    }
  }
}
"""


def strip(body: dict[str, Any]) -> dict[str, Any]:
    """What a caller can compare between two answers (same query, so same locations)."""
    return {"data": body.get("data"), "errors": body.get("errors"), "status": body["_status"]}


def scans(order: Order, services: Services) -> list[str]:
    """One scan per unit of every line of `order`."""
    with db_session(services) as session:
        rows = session.execute(
            text("SELECT sku, quantity FROM order_lines WHERE order_id = :id"), {"id": order.id}
        ).all()
    return [sku for sku, quantity in rows for _ in range(quantity)]


def pack(
    run: Run[Any],
    services: Services,
    warehouse: Account,
    order: Order,
    lines: list[tuple[str, int]] | None = None,
) -> None:
    if lines is None:
        scanned = scans(order, services)
        requests = None
    else:
        scanned = [sku for sku, quantity in lines for _ in range(quantity)]
        requests = [LineRequest(sku, quantity) for sku, quantity in lines]
    run(services.shipments.pack_order(warehouse.viewer, order.code, "10.0.0.9", scanned, requests))


def ship(
    run: Run[Any],
    services: Services,
    warehouse: Account,
    order: Order,
    tracking: str | None = None,
    lines: list[tuple[str, int]] | None = None,
    carrier: str = "DHL",
) -> ShipResult:
    requests = [LineRequest(sku, quantity) for sku, quantity in lines] if lines else None
    result: ShipResult = run(
        services.shipments.ship_order(
            warehouse.viewer,
            order.code,
            "10.0.0.9",
            carrier,
            tracking or f"TRK{uuid.uuid4().hex[:16].upper()}",
            requests,
        )
    )
    return result


def event(
    run: Run[Any],
    services: Services,
    warehouse: Account,
    order: Order,
    tracking: str,
    status: str,
    *,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    carrier: str = "DHL",
    location: str = "Hub",
    place: Place | None = None,
) -> bool:
    result: EventResult = run(
        services.shipments.add_tracking_event(
            warehouse.viewer,
            order.code,
            "10.0.0.9",
            carrier,
            tracking,
            EventInput(
                status=status,
                occurred_at=occurred_at or datetime.now(UTC),
                location=location,
                place=place,
                event_id=event_id,
            ),
        )
    )
    return result.recorded


def order_status(services: Services, order: Order) -> str:
    with db_session(services) as session:
        return str(
            session.execute(
                text("SELECT status FROM orders WHERE id = :id"), {"id": order.id}
            ).scalar_one()
        )


def ship_in_parcels(
    run: Run[Any],
    services: Services,
    warehouse: Account,
    view: OrderView,
    parcels: list[list[tuple[str, int]] | None],
    carrier: str = "DHL",
) -> list[str]:
    """Pack and ship the order, one shipment per entry of `parcels`; the tracking numbers."""
    pack(run, services, warehouse, view.order)
    return [
        ship(
            run, services, warehouse, view.order, lines=lines, carrier=carrier
        ).shipment.tracking_number
        for lines in parcels
    ]


def webhook_event(
    http: TestClient,
    tracking: str,
    status: str,
    *,
    carrier: str = "DHL",
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    estimated_delivery: date | None = None,
    location: str | dict[str, str] = "Leipzig Hub",
) -> str:
    """One event through the real, signed carrier webhook (202); the webhook's answer."""
    body = event_body(
        carrier=carrier,
        tracking_number=tracking,
        status=status,
        event_id=event_id or f"evt-{uuid.uuid4().hex}",
        occurred_at=(occurred_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        location=location,
        estimated_delivery=estimated_delivery.isoformat() if estimated_delivery else None,
    )
    response = http.post(
        "/webhooks/carrier", content=body, headers=signed_headers(DEV_CARRIER_SECRET, body)
    )
    assert response.status_code == 202, response.text
    return response.text
