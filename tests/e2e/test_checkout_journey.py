"""Issue 8 end to end: the code noted on the checkout summary is the order's code, in the
confirmation email and in the history — through the real server and a real SMTP server."""

from __future__ import annotations

import email.policy
from collections.abc import Callable

import pytest

from tests.e2e.conftest import Api, SmtpSink

pytestmark = pytest.mark.e2e

START = """
mutation Start($lines: [OrderLineInput!]!, $address: AddressInput!) {
  startCheckout(lines: $lines, shippingAddress: $address) {
    checkout { code total { amount } estimatedDelivery }
    userErrors { field message code }
  }
}
"""
PLACE = """
mutation Place($code: String!) {
  placeOrder(checkoutCode: $code, paymentToken: "tok_visa") {
    order { code status total { amount } }
    userErrors { field message code }
  }
}
"""
HISTORY = "{ myOrders(first: 1) { edges { node { code } } } }"
ADDRESS = {
    "name": "Alice Example",
    "line1": "1 Demo Street",
    "city": "Berlin",
    "postalCode": "10115",
    "country": "DE",
}


def test_the_code_on_the_summary_is_the_code_in_the_email_and_the_history(
    api: Callable[..., Api], login: Callable[[str], str], smtp_server: SmtpSink
) -> None:
    # given alice, logged in, with the demo emails already delivered
    token = login("alice@example.com")
    alice = api(token)
    before = len(smtp_server.wait_for(1, to="alice@example.com"))
    # when she opens the summary and notes the code
    summary = alice.data(START, lines=[{"sku": "MUG-001", "quantity": 1}], address=ADDRESS)
    noted = summary["startCheckout"]["checkout"]["code"]
    # and confirms the purchase with it
    placed = alice.data(PLACE, code=noted)["placeOrder"]
    assert placed["userErrors"] == []
    # then the order, the email and the history all carry the noted code
    assert placed["order"]["code"] == noted
    mails = smtp_server.wait_for(before + 1, to="alice@example.com")
    confirmation = [m for m in mails if noted in str(m["Subject"]) or noted in _body(m)]
    assert len(confirmation) == 1
    assert noted in _body(confirmation[0])
    assert alice.data(HISTORY)["myOrders"]["edges"][0]["node"]["code"] == noted
    # and confirming twice (a double click) changes nothing
    again = alice.data(PLACE, code=noted)["placeOrder"]["order"]
    assert again["code"] == noted


def _body(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())
