"""A payment provider slower than the request time cap: the request ends at the cap with
SERVICE_UNAVAILABLE, nothing is charged, no order appears, and the stock held for the
payment comes back once the reservation expires (the reconciler releases it). Meanwhile
the rest of the instance, writes included, is not held behind the charge."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from app.settings import DEV_CARRIER_SECRET
from app.shipments.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from tests.e2e.conftest import LiveServer
from tests.nonblocking.conftest import Client, Database, error_codes, log_in

pytestmark = pytest.mark.e2e

PLACE = """
mutation($key: String!) {
  placeOrder(lines: [{sku: "MUG-001", quantity: 2}], paymentToken: "tok_visa",
    idempotencyKey: $key,
    shippingAddress: {name: "Alice Example", line1: "1 Demo Street", city: "Berlin",
                      postalCode: "10115", country: "DE"}) {
    order { code } userErrors { code message }
  }
}
"""
MUG_STOCK = "SELECT stock FROM products WHERE sku = 'MUG-001'"


def test_a_provider_slower_than_the_cap_ends_the_request_and_the_stock_comes_back(
    database: Database, start_server: Callable[..., LiveServer]
) -> None:
    # given a provider that takes 3 s per call, and a 1 s request time cap
    server = start_server(
        TEST_PAYMENT_LATENCY_SECONDS="3",
        REQUEST_TIMEOUT_SECONDS="1",
        PAYMENT_TIMEOUT_SECONDS="5",
        RECONCILE_AFTER_SECONDS="6",
        RESERVATION_TTL_SECONDS="6",
        RECONCILE_INTERVAL_SECONDS="0.5",
    )
    alice = log_in(server, "alice@example.com")
    stock_before = database.scalar(MUG_STOCK)
    key = "slow-provider-0001"
    # when alice places an order
    elapsed, answer = alice.timed(PLACE, key=key)
    # then the answer comes at the cap, and says to try again later
    assert answer.status_code == 503, answer.text
    assert error_codes(answer) == ["SERVICE_UNAVAILABLE"]
    assert 0.9 <= elapsed < 2.5, elapsed
    # and the stock is held for the payment under way, with no order yet
    assert database.scalar(MUG_STOCK) == stock_before - 2
    assert database.scalar("SELECT count(*) FROM orders WHERE idempotency_key = %s", key) == 0
    # then, once the reservation expired, the reconciler asked the provider (nothing was
    # charged: the call was cut off before the provider took the money) and released it
    deadline = time.monotonic() + 20
    while database.scalar(MUG_STOCK) != stock_before:
        assert time.monotonic() < deadline, "the reservation was never released"
        time.sleep(0.25)
    status = "SELECT status FROM order_reservations WHERE idempotency_key = %s"
    assert database.scalar(status, key) == "RELEASED"
    assert database.scalar("SELECT count(*) FROM orders WHERE idempotency_key = %s", key) == 0
    assert _charges(database, key) == 0


def test_other_writes_are_not_held_behind_a_charge(
    database: Database, start_server: Callable[..., LiveServer]
) -> None:
    # given a provider that takes 1 s per charge
    server = start_server(TEST_PAYMENT_LATENCY_SECONDS="1")
    alice = log_in(server, "alice@example.com")
    alice_on_her_phone = log_in(server, "alice@example.com")
    delivered = _first_code(alice_on_her_phone, "DELIVERED")
    placed: list[float] = []

    def place() -> None:
        started = time.perf_counter()
        body = alice.data(PLACE, key="charge-in-flight-1")
        assert body["placeOrder"]["order"] is not None, body
        placed.append(time.perf_counter() - started)

    # when alice's order is being charged ...
    buyer = threading.Thread(target=place)
    buyer.start()
    time.sleep(0.3)
    # ... a carrier reports an event and alice, on her phone, asks to return a delivered
    # mug (writes to the same tables; on SQLite to the same file, which has one writer)
    webhook_elapsed, webhook = _carrier_event(server, "DEMO-ALICE-2")
    return_elapsed, returned = alice_on_her_phone.timed(REQUEST_RETURN, code=delivered)
    buyer.join(timeout=30)
    # then neither waited for alice's charge
    assert webhook.status_code == 202, webhook.text
    assert webhook_elapsed < 0.5, webhook_elapsed
    payload = returned.json()["data"]["requestReturn"]
    assert payload["userErrors"] == [] and payload["returnRequest"]["status"] == "REQUESTED"
    assert return_elapsed < 0.5, return_elapsed
    assert placed and placed[0] >= 1.0, placed  # the charge really took its time


REQUEST_RETURN = """
mutation($code: String!) {
  requestReturn(code: $code, lines: [{sku: "MUG-001", quantity: 1}], reason: DAMAGED) {
    returnRequest { status } userErrors { code message }
  }
}
"""


def _carrier_event(server: LiveServer, tracking: str) -> tuple[float, httpx.Response]:
    body = json.dumps(
        {
            "eventId": f"nonblocking-{time.time_ns()}",
            "carrier": "DHL",
            "trackingNumber": tracking,
            "status": "IN_TRANSIT",
            "occurredAt": datetime.now(UTC).isoformat(),
            "location": "Leipzig",
            "description": "Sorted",
        }
    ).encode()
    stamp = str(int(time.time()))
    headers = {
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: signature(DEV_CARRIER_SECRET, stamp, body),
        "content-type": "application/json",
    }
    started = time.perf_counter()
    response = httpx.post(f"{server.base_url}/webhooks/carrier", content=body, headers=headers)
    return time.perf_counter() - started, response


def _first_code(client: Client, status: str) -> str:
    query = (
        "query($s: [OrderStatus!]) { myOrders(first: 1, filter: {status: $s}) "
        "{ edges { node { code } } } }"
    )
    code: str = client.data(query, s=[status])["myOrders"]["edges"][0]["node"]["code"]
    return code


def _charges(database: Database, key: str) -> int:
    """Charges in the test provider's ledger whose idempotency key ends with `key`."""
    if database.kind == "sqlite":
        ledger = database.sqlite_path.with_name(database.sqlite_path.stem + ".payments.db")
        ledger_db = Database("sqlite", f"sqlite:///{ledger}")
        return int(
            ledger_db.scalar(
                "SELECT count(*) FROM test_provider_transactions "
                "WHERE kind = 'charge' AND idempotency_key LIKE %s",
                f"%{key}%",
            )
        )
    return int(
        database.scalar(
            "SELECT count(*) FROM test_provider_transactions "
            "WHERE kind = 'charge' AND idempotency_key LIKE %s",
            f"%{key}%",
        )
    )
