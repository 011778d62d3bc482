"""Returns end to end (DESIGN §1.8) against the real server process: alice buys, the
warehouse packs and ships, the carrier posts a signed DELIVERED event, alice asks to return
the mug, support approves, the warehouse receives, an admin refunds. Every return email
arrives over SMTP; alice sees the order partly returned and its whole timeline; the audit
log holds every staff step."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from app.security import codes
from tests.e2e.conftest import Api, LiveServer
from tests.e2e.test_fulfilment_journey import (
    pack_and_ship,
    place,
    run_carrier_client,
    wait_for_subject,
)

pytestmark = pytest.mark.e2e

ELIGIBILITY = """
query Eligibility($code: String!) {
  returnEligibility(code: $code) { canReturn lines { sku returnableQuantity reason } }
}
"""
REQUEST = """
mutation Request($code: String!, $lines: [ReturnLineInput!]!) {
  requestReturn(code: $code, lines: $lines, reason: DAMAGED, comment: "Chipped rim") {
    returnRequest { rma status lines { sku quantity } }
    userErrors { field message code }
  }
}
"""
APPROVE = """
mutation Approve($rma: String!) {
  approveReturn(rma: $rma) { returnRequest { status } userErrors { code message } }
}
"""
RECEIVE = """
mutation Receive($rma: String!, $lines: [ReturnLineInput!]!) {
  receiveReturn(rma: $rma, lines: $lines) {
    returnRequest { status lines { sku receivedQuantity } }
    userErrors { code message }
  }
}
"""
REFUND = """
mutation Refund($rma: String!) {
  refundReturn(rma: $rma) {
    returnRequest { status refund { amount currency } }
    userErrors { code message }
  }
}
"""
RETURN = """
query Return($rma: String!) {
  returnRequest(rma: $rma) { status refund { amount currency } refundedAt }
}
"""
ORDER = """
query Order($code: String!) {
  order(code: $code) {
    status refunded { amount }
    timeline { kind amount { amount } rma carrier }
  }
}
"""
AUDIT = """
query Audit($code: String!) {
  auditLog(filter: {code: $code}, first: 50) { edges { node { actorEmail action outcome } } }
}
"""


def test_return_a_delivered_item_and_get_the_money_back(
    live_server: LiveServer,
    api: Callable[..., Api],
    login: Callable[[str], str],
) -> None:
    # given alice has bought a mug and a T-shirt
    alice = api(login("alice@example.com"))
    lines = [{"sku": "MUG-001", "quantity": 1}, {"sku": "TEE-BLK-M", "quantity": 1}]
    code = place(alice, lines, "e2e-return")

    # given the warehouse has packed and shipped it
    warehouse = api(login("warehouse@example.com"))
    tracking = pack_and_ship(warehouse, code)

    # when the carrier posts a signed DELIVERED event
    delivered = run_carrier_client(
        live_server, tracking, "DELIVERED", "--event-id", f"dhl-{uuid.uuid4().hex}"
    )
    assert delivered.stdout.startswith("202 "), delivered.stdout + delivered.stderr

    # then alice can return both items
    eligibility = alice.data(ELIGIBILITY, code=code)["returnEligibility"]
    assert eligibility["canReturn"] is True
    assert [(x["sku"], x["returnableQuantity"]) for x in eligibility["lines"]] == [
        ("MUG-001", 1),
        ("TEE-BLK-M", 1),
    ]

    # when alice asks to return the mug
    requested = alice.data(REQUEST, code=code, lines=[{"sku": "MUG-001", "quantity": 1}])[
        "requestReturn"
    ]
    assert requested["userErrors"] == []
    rma = requested["returnRequest"]["rma"]
    assert requested["returnRequest"]["status"] == "REQUESTED"
    assert codes.normalise(rma) != codes.normalise(code)
    # then the return instructions arrive over SMTP, with the RMA
    instructions = wait_for_subject(live_server, f"Your return {rma} for order {code}")
    assert str(instructions["To"]) == "alice@example.com"
    plain = instructions.get_body(preferencelist=("plain",))
    assert plain is not None
    assert f"write the return number {rma}" in plain.get_content().replace("\r\n", "\n")

    # when support approves, the warehouse receives the mug and an admin refunds it
    support = api(login("support@example.com"))
    admin = api(login("admin@example.com"))
    assert support.data(APPROVE, rma=rma)["approveReturn"]["returnRequest"]["status"] == (
        "APPROVED"
    )
    received = warehouse.data(RECEIVE, rma=rma, lines=[{"sku": "MUG-001", "quantity": 1}])
    assert received["receiveReturn"]["returnRequest"]["status"] == "RECEIVED"
    refunded = admin.data(REFUND, rma=rma)["refundReturn"]
    # then the mug's price is refunded (a partial return keeps the shipping fee)
    assert refunded["userErrors"] == []
    assert refunded["returnRequest"]["refund"] == {"amount": 1299, "currency": "EUR"}
    # then asking again changes nothing
    again = admin.data(REFUND, rma=rma)["refundReturn"]
    assert again == refunded

    # then alice is emailed at every step
    wait_for_subject(live_server, f"Your return {rma} is approved: please send the items")
    wait_for_subject(live_server, f"We received your return {rma}")
    refund_mail = wait_for_subject(live_server, f"Your refund for return {rma}")
    refund_plain = refund_mail.get_body(preferencelist=("plain",))
    assert refund_plain is not None
    assert "EUR 12.99" in refund_plain.get_content()
    to_alice = [m for m in live_server.smtp.messages if rma in str(m["Subject"])]
    assert len(to_alice) == 4 and {str(m["To"]) for m in to_alice} == {"alice@example.com"}

    # then alice sees her return refunded, the order partly returned, and the whole story
    assert alice.data(RETURN, rma=rma)["returnRequest"]["refund"]["amount"] == 1299
    order = alice.data(ORDER, code=code)["order"]
    assert order["status"] == "PARTIALLY_RETURNED"
    assert order["refunded"]["amount"] == 1299
    assert [e["kind"] for e in order["timeline"]] == [
        "PLACED",
        "PAID",
        "SHIPPED",
        "DELIVERED",
        "RETURN_REQUESTED",
        "RETURN_APPROVED",
        "RETURN_RECEIVED",
        "REFUNDED",
    ]
    assert order["timeline"][-1] == {
        "kind": "REFUNDED",
        "amount": {"amount": 1299},
        "rma": rma,
        "carrier": None,
    }

    # then the audit log holds every staff step, with who did it
    edges = admin.data(AUDIT, code=code)["auditLog"]["edges"]
    steps = [(e["node"]["action"], e["node"]["actorEmail"]) for e in reversed(edges)]
    assert steps == [
        ("pick_list", "warehouse@example.com"),
        ("pack_order", "warehouse@example.com"),
        ("ship_order", "warehouse@example.com"),
        ("approve_return", "support@example.com"),
        ("receive_return", "warehouse@example.com"),
        ("refund_return", "admin@example.com"),
    ]

    # then the server's logs never show the order code or the RMA
    logs = live_server.stderr_text()
    for secret in (code, codes.normalise(code), rma, codes.normalise(rma)):
        assert secret not in logs
