"""Fulfilment end to end (DESIGN §1.6-7) against the real server process: the customer
buys, the warehouse picks, packs and ships over GraphQL, the carrier posts a signed
DELIVERED event with scripts/carrier_client.py, the customer sees the delivery on
order(code) { shipments { events } } and the shipping email arrives over SMTP."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from app.settings import DEV_CARRIER_SECRET
from tests.e2e.conftest import MAIL_TIMEOUT, Api, LiveServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CARRIER_CLIENT = ROOT / "scripts" / "carrier_client.py"

PLACE_ORDER = """
mutation Place($lines: [OrderLineInput!]!, $address: AddressInput!, $key: String!) {
  placeOrder(lines: $lines, shippingAddress: $address, paymentToken: "tok_visa",
             idempotencyKey: $key) {
    order { code status }
    userErrors { field message code }
  }
}
"""
PICK_LIST = """
query Pick($code: String!) {
  pickList(code: $code) { code status lines { sku quantity binLocation } }
}
"""
PACK = """
mutation Pack($code: String!, $scans: [String!]!) {
  packOrder(code: $code, scannedSkus: $scans) {
    order { status } missing { sku quantity } unexpected { sku quantity }
    userErrors { field message code }
  }
}
"""
SHIP = """
mutation Ship($code: String!, $tracking: String!) {
  shipOrder(code: $code, carrier: "DHL", trackingNumber: $tracking) {
    order { status } shipment { trackingNumber estimatedDelivery }
    userErrors { field message code }
  }
}
"""
TRACKING = """
query Tracking($code: String!) {
  order(code: $code) {
    status
    shipments { carrier trackingNumber status deliveredAt
                events { status location description occurredAt } }
  }
}
"""
ADDRESS = {
    "name": "Alice Example",
    "line1": "1 Demo Street",
    "city": "Berlin",
    "postalCode": "10115",
    "country": "DE",
}


def wait_for_subject(live_server: LiveServer, subject: str) -> EmailMessage:
    deadline = time.monotonic() + MAIL_TIMEOUT
    while time.monotonic() < deadline:
        for message in live_server.smtp.messages:
            if str(message["Subject"]) == subject:
                return message
        time.sleep(0.1)
    seen = [str(m["Subject"]) for m in live_server.smtp.messages]
    pytest.fail(f"no email {subject!r} within {MAIL_TIMEOUT} s (got {seen})")


def run_carrier_client(
    live_server: LiveServer, tracking: str, status: str, *args: str, secret: str | None = None
) -> subprocess.CompletedProcess[str]:
    """scripts/carrier_client.py posting one DHL event for `tracking`: signed with the
    server's secret, or with `secret` passed on the command line."""
    env = {"PATH": live_server.env["PATH"]}
    if secret is None:
        env["CARRIER_WEBHOOK_SECRET"] = DEV_CARRIER_SECRET
    else:
        args = (*args, "--secret", secret)
    return subprocess.run(
        [
            sys.executable,
            str(CARRIER_CLIENT),
            "--url",
            f"{live_server.base_url}/webhooks/carrier",
            "--carrier",
            "DHL",
            "--tracking-number",
            tracking,
            "--status",
            status,
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def place(customer: Api, lines: list[dict[str, object]], key_prefix: str) -> str:
    """placeOrder with the test card; the new order's code."""
    placed = customer.data(
        PLACE_ORDER, lines=lines, address=ADDRESS, key=f"{key_prefix}-{uuid.uuid4().hex}"
    )["placeOrder"]
    assert placed["userErrors"] == []
    code: str = placed["order"]["code"]
    return code


def pack_and_ship(warehouse: Api, code: str) -> str:
    """Scan every line of the pick list and ship it with DHL; the tracking number."""
    pick = warehouse.data(PICK_LIST, code=code)["pickList"]
    scans = [line["sku"] for line in pick["lines"] for _ in range(line["quantity"])]
    assert warehouse.data(PACK, code=code, scans=scans)["packOrder"]["userErrors"] == []
    tracking = f"JJD{uuid.uuid4().hex[:14].upper()}"
    assert warehouse.data(SHIP, code=code, tracking=tracking)["shipOrder"]["userErrors"] == []
    return tracking


def test_ship_an_order_and_deliver_it_with_a_signed_carrier_event(
    live_server: LiveServer,
    api: Callable[..., Api],
    login: Callable[[str], str],
) -> None:
    # Given alice has bought two mugs and a T-shirt
    alice = api(login("alice@example.com"))
    lines = [{"sku": "MUG-001", "quantity": 2}, {"sku": "TEE-BLK-M", "quantity": 1}]
    code = place(alice, lines, "e2e-ship")

    # When the warehouse logs in and opens the pick list
    warehouse = api(login("warehouse@example.com"))
    pick = warehouse.data(PICK_LIST, code=code)["pickList"]
    # Then the lines come in bin order
    assert [(line["binLocation"], line["sku"]) for line in pick["lines"]] == [
        ("A-01-03", "MUG-001"),
        ("B-04-01", "TEE-BLK-M"),
    ]

    # When it scans every item and ships the parcel with DHL
    scans = [line["sku"] for line in pick["lines"] for _ in range(line["quantity"])]
    packed = warehouse.data(PACK, code=code, scans=scans)["packOrder"]
    assert packed["userErrors"] == [] and packed["order"]["status"] == "PACKED"
    tracking = f"JJD{uuid.uuid4().hex[:14].upper()}"
    shipped = warehouse.data(SHIP, code=code, tracking=tracking)["shipOrder"]
    # Then the order is SHIPPED
    assert shipped["userErrors"] == []
    assert shipped["order"]["status"] == "SHIPPED"
    estimate = shipped["shipment"]["estimatedDelivery"]

    # Then alice receives the shipping email over SMTP with carrier, number and date
    mail = wait_for_subject(live_server, f"Your order {code} has shipped")
    assert str(mail["To"]) == "alice@example.com"
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None
    body = plain.get_content().replace("\r\n", "\n")
    assert "Carrier:          DHL" in body
    assert f"Tracking number:  {tracking}" in body
    assert f"({estimate})" in body

    # When the carrier posts a signed DELIVERED event with the sample client
    result = run_carrier_client(
        live_server,
        tracking,
        "DELIVERED",
        "--location",
        "Berlin",
        "--description",
        "Delivered to the front door",
        "--event-id",
        f"dhl-{uuid.uuid4().hex}",
    )
    # Then the webhook accepted it
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("202 "), result.stdout

    # Then alice sees the delivery on her order
    order = alice.data(TRACKING, code=code)["order"]
    assert order["status"] == "DELIVERED"
    [shipment] = order["shipments"]
    assert (shipment["carrier"], shipment["trackingNumber"]) == ("DHL", tracking)
    assert shipment["status"] == "DELIVERED" and shipment["deliveredAt"]
    assert shipment["events"][0]["status"] == "DELIVERED"
    assert shipment["events"][0]["location"] == "Berlin"
    assert shipment["events"][0]["description"] == "Delivered to the front door"

    # When the same client signs with a wrong secret
    forged = run_carrier_client(
        live_server, tracking, "EXCEPTION", secret="not-the-shared-secret-0123456789abcdef"
    )
    # Then it is refused and alice's order shows one event, still delivered
    assert forged.returncode == 1 and forged.stdout.startswith("401 "), forged.stdout
    after = alice.data(TRACKING, code=code)["order"]
    assert len(after["shipments"][0]["events"]) == 1
    assert after["status"] == "DELIVERED"

    # Then the server's logs never show the order code or the tracking number
    logs = live_server.stderr_text()
    for secret in (code, code.replace("-", ""), tracking):
        assert secret not in logs
