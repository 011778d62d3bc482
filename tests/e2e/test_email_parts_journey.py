"""Every kind of email end to end, against the real server process and a real SMTP server
(aiosmtpd): alice buys (confirmation), the warehouse ships (shipped), the carrier delivers,
alice returns an item (requested, approved, received, refunded), has a second return
rejected, and cancels another order (cancellation). Each email is read back with the
standard library's `email` package: a plain-text and an HTML part with the same facts,
HTML that parses and loads nothing, the shop from SHOP_NAME / SHOP_SUPPORT_EMAIL /
SHOP_URL, and the link `{SHOP_URL}/orders#<code>` with the code only in the fragment."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from email.message import EmailMessage

import pytest

from app.notifications.templates import format_long_date
from tests.e2e.conftest import Api, LiveServer
from tests.e2e.test_fulfilment_journey import (
    pack_and_ship,
    place,
    run_carrier_client,
    wait_for_subject,
)
from tests.e2e.test_returns_journey import APPROVE, RECEIVE, REFUND, REQUEST
from tests.email_checks import (
    assert_order_link,
    assert_same_facts,
    assert_shop_frame,
    parse_email,
)

SHOP_NAME = "Kettle & Co"
SHOP_URL = "https://kettle.example"
SUPPORT = "help@kettle.example"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.server_env(SHOP_NAME=SHOP_NAME, SHOP_URL=SHOP_URL, SHOP_SUPPORT_EMAIL=SUPPORT),
]

ORDER = """
query Order($code: String!) {
  order(code: $code) {
    estimatedDelivery
    total { amount currency } subtotal { amount } tax { amount }
    lines { sku name quantity unitPrice { amount } }
  }
}
"""
CANCEL = """
mutation Cancel($code: String!) {
  cancelOrder(code: $code) { order { status } userErrors { code message } }
}
"""
REJECT = """
mutation Reject($rma: String!) {
  rejectReturn(rma: $rma, reason: "Shows signs of use") {
    returnRequest { status } userErrors { code message }
  }
}
"""


def eur(amount: int) -> str:
    return f"EUR {amount // 100}.{amount % 100:02d}"


def check(mail: EmailMessage, code: str, facts: list[str]) -> None:
    assert str(mail["To"]) == "alice@example.com"
    assert str(mail["Reply-To"]) == SUPPORT
    parsed = parse_email(mail)
    assert_same_facts(parsed, [code, *facts])
    assert_shop_frame(parsed, SHOP_NAME, SUPPORT)
    assert_order_link(parsed, SHOP_URL, code)
    assert "http://" not in parsed.html  # the shop is https: nothing plain in the HTML


def test_every_kind_of_email_arrives_with_both_parts_and_the_order_link(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str]
) -> None:
    alice = api(login("alice@example.com"))
    warehouse = api(login("warehouse@example.com"))
    support = api(login("support@example.com"))
    admin = api(login("admin@example.com"))

    # alice buys two mugs and a T-shirt: the confirmation has the items, totals and date
    lines = [{"sku": "MUG-001", "quantity": 2}, {"sku": "TEE-BLK-M", "quantity": 1}]
    code = place(alice, lines, "e2e-parts")
    order = alice.data(ORDER, code=code)["order"]
    items = [f"{line['quantity']} x {line['name']} ({line['sku']})" for line in order["lines"]]
    estimate = order["estimatedDelivery"][:10]
    check(
        wait_for_subject(live_server, f"Your order {code} is confirmed"),
        code,
        [
            *items,
            *(f"{eur(line['unitPrice']['amount'])} each" for line in order["lines"]),
            eur(order["subtotal"]["amount"]),
            eur(order["total"]["amount"]),
            f"includes {eur(order['tax']['amount'])} VAT",
            format_long_date(estimate),
            estimate,
            "1 Demo Street",
        ],
    )

    # the warehouse ships it: carrier, tracking number, items
    tracking = pack_and_ship(warehouse, code)
    check(
        wait_for_subject(live_server, f"Your order {code} has shipped"),
        code,
        ["DHL", tracking, *items],
    )

    # the carrier delivers; alice returns one mug and the T-shirt
    delivered = run_carrier_client(
        live_server, tracking, "DELIVERED", "--event-id", f"dhl-{uuid.uuid4().hex}"
    )
    assert delivered.stdout.startswith("202 "), delivered.stdout + delivered.stderr
    asked = [{"sku": "MUG-001", "quantity": 1}, {"sku": "TEE-BLK-M", "quantity": 1}]
    requested = alice.data(REQUEST, code=code, lines=asked)["requestReturn"]
    assert requested["userErrors"] == []
    rma = requested["returnRequest"]["rma"]
    mug = next(line for line in order["lines"] if line["sku"] == "MUG-001")
    tee = next(line for line in order["lines"] if line["sku"] == "TEE-BLK-M")
    returned = [f"1 x {mug['name']} (MUG-001)", f"1 x {tee['name']} (TEE-BLK-M)"]
    check(
        wait_for_subject(live_server, f"Your return {rma} for order {code}"),
        code,
        [rma, *returned, "Dock 3, 1 Warehouse Road"],
    )
    assert support.data(APPROVE, rma=rma)["approveReturn"]["userErrors"] == []
    check(
        wait_for_subject(live_server, f"Your return {rma} is approved: please send the items"),
        code,
        [rma, *returned],
    )
    # only the mug comes back
    received = warehouse.data(RECEIVE, rma=rma, lines=[{"sku": "MUG-001", "quantity": 1}])
    assert received["receiveReturn"]["userErrors"] == []
    check(
        wait_for_subject(live_server, f"We received your return {rma}"),
        code,
        [rma, f"1 of 1 x {mug['name']} (MUG-001)", f"0 of 1 x {tee['name']} (TEE-BLK-M)"],
    )
    refunded = admin.data(REFUND, rma=rma)["refundReturn"]
    assert refunded["userErrors"] == []
    amount = refunded["returnRequest"]["refund"]["amount"]
    assert amount == mug["unitPrice"]["amount"]
    check(
        wait_for_subject(live_server, f"Your refund for return {rma}"),
        code,
        [rma, eur(amount), f"1 x {mug['name']} (MUG-001)"],
    )

    # a second return, of the other mug, is rejected
    again = alice.data(REQUEST, code=code, lines=[{"sku": "MUG-001", "quantity": 1}])
    second = again["requestReturn"]["returnRequest"]["rma"]
    assert support.data(REJECT, rma=second)["rejectReturn"]["userErrors"] == []
    check(
        wait_for_subject(live_server, f"Your return {second} could not be accepted"),
        code,
        [second, "Shows signs of use", f"1 x {mug['name']} (MUG-001)"],
    )

    # another order, cancelled before it ships: the full refund
    other = place(alice, [{"sku": "MUG-001", "quantity": 1}], "e2e-parts-cancel")
    total = alice.data(ORDER, code=other)["order"]["total"]["amount"]
    assert alice.data(CANCEL, code=other)["cancelOrder"]["userErrors"] == []
    check(
        wait_for_subject(live_server, f"Your order {other} is cancelled"),
        other,
        [f"We are refunding {eur(total)}"],
    )
