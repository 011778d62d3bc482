"""The customer journeys of DESIGN §1 against the real server process, through a real
GraphQL client, with the confirmation email received by a real SMTP server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import date
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from gql.transport.exceptions import TransportQueryError

from app.security import codes
from tests.e2e.conftest import Api, LiveServer

pytestmark = pytest.mark.e2e

ORDER_FIELDS = """
fragment OrderFields on Order {
  code
  status
  estimatedDelivery
  subtotal { amount currency }
  shipping { amount currency }
  total { amount currency }
  lines { sku name quantity unitPrice { amount currency } lineTotal { amount currency } }
}
"""

REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) {
    user { email role }
    tokens { accessToken }
    userErrors { field message code }
  }
}
"""

ME = "query Me { me { email role } }"

PRODUCTS = """
query Products {
  products(first: 50) { edges { node { sku name price { amount currency } inStock } } }
}
"""

PLACE_ORDER = (
    """
mutation PlaceOrder(
  $lines: [OrderLineInput!]!, $address: AddressInput!, $token: String!, $key: String!
) {
  placeOrder(
    lines: $lines, shippingAddress: $address, paymentToken: $token, idempotencyKey: $key
  ) {
    order { ...OrderFields }
    userErrors { field message code }
  }
}
"""
    + ORDER_FIELDS
)

ORDER = "query Order($code: String!) { order(code: $code) { ...OrderFields } }" + ORDER_FIELDS

MY_ORDERS = """
query MyOrders { myOrders(first: 10) { edges { node { code status } } } }
"""

# The history a page at a time, with what the app's order list shows (the lines and parcels
# myOrders fetches with the page) and the sealed cursor to carry on from
HISTORY_PAGE = """
query HistoryPage($first: Int!, $after: String) {
  myOrders(first: $first, after: $after) {
    edges { cursor node { code lines { sku quantity } shipments { carrier } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""

LOGOUT = "mutation Logout { logout { ok userErrors { field message code } } }"

ADDRESS = {
    "name": "Erin Endtoend",
    "line1": "5 Harbour Lane",
    "city": "Hamburg",
    "postalCode": "20095",
    "country": "DE",
}
CODE_SHAPE = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(?:-[0-9A-HJKMNP-TV-Z]{4}){3}")
PRINTED_CODE = re.compile(r"^Order code:\s*(\S+)\s*$", re.MULTILINE)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def error_codes(error: TransportQueryError) -> list[str | None]:
    return [(e.get("extensions") or {}).get("code") for e in error.errors or []]


def money(amount: int, currency: str) -> str:
    """How a person reads an amount in the email: EUR 50.97."""
    return f"{currency} {amount // 100}.{amount % 100:02d}"


def text_of(mail: EmailMessage) -> str:
    """The decoded body with plain newlines (SMTP delivers it with CRLF)."""
    plain = mail.get_body(preferencelist=("plain",))
    assert plain is not None
    content: str = plain.get_content()
    return content.replace("\r\n", "\n")


def place(customer: Api, lines: list[tuple[str, int]], key: str) -> dict[str, Any]:
    payload: dict[str, Any] = customer.data(
        PLACE_ORDER,
        lines=[{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        address=ADDRESS,
        token="tok_visa",
        key=key,
    )["placeOrder"]
    assert payload["userErrors"] == [], payload["userErrors"]
    order: dict[str, Any] = payload["order"]
    return order


def test_checkout_journey_from_registration_to_logout(
    live_server: LiveServer,
    api: Callable[..., Api],
    login: Callable[[str, str], str],
) -> None:
    # Given a customer who registers and then logs in
    address = f"e2e-{uuid.uuid4().hex[:12]}@example.com"
    password = "Plum-Cactus-Lantern-42"
    registered = api().data(
        REGISTER, input={"email": address, "password": password, "name": "Erin Endtoend"}
    )["register"]
    assert registered["userErrors"] == []
    assert registered["user"] == {"email": address, "role": "CUSTOMER"}
    token = login(address, password)
    customer = api(token)
    assert customer.data(ME)["me"] == {"email": address, "role": "CUSTOMER"}

    # Given the catalogue as the shop shows it
    catalogue = {
        edge["node"]["sku"]: edge["node"] for edge in api().data(PRODUCTS)["products"]["edges"]
    }
    assert {"MUG-001", "TEE-BLK-M", "LAMP-DESK"} <= catalogue.keys()
    mug, tee = catalogue["MUG-001"], catalogue["TEE-BLK-M"]

    # Given an older order of theirs (so that "newest first" means something)
    older = place(customer, [("LAMP-DESK", 1)], key=f"e2e-older-{uuid.uuid4().hex}")

    # When they place an order
    key = f"e2e-{uuid.uuid4().hex}"
    order = place(customer, [("MUG-001", 2), ("TEE-BLK-M", 1)], key=key)

    # Then the order is priced from the catalogue and carries a well-formed code
    assert CODE_SHAPE.fullmatch(order["code"]), order["code"]
    assert order["code"] != older["code"]
    assert order["status"] == "PLACED"
    assert [(line["sku"], line["quantity"]) for line in order["lines"]] == [
        ("MUG-001", 2),
        ("TEE-BLK-M", 1),
    ]
    expected_subtotal = 2 * mug["price"]["amount"] + tee["price"]["amount"]
    assert order["subtotal"]["amount"] == expected_subtotal
    assert order["total"]["amount"] == expected_subtotal + order["shipping"]["amount"]
    currency = order["total"]["currency"]

    # Then the confirmation email reaches the customer's address over SMTP
    mails = live_server.smtp.wait_for(2, to=address)
    by_code: dict[str, EmailMessage] = {}
    for mail in mails:
        printed = PRINTED_CODE.findall(text_of(mail))
        assert len(printed) == 1, text_of(mail)
        by_code[printed[0]] = mail
    assert by_code.keys() == {order["code"], older["code"]}
    confirmation = by_code[order["code"]]
    body = text_of(confirmation)
    printed_code = PRINTED_CODE.findall(body)[0]
    assert str(confirmation["To"]) == address
    assert printed_code in str(confirmation["Subject"])
    # ... with the lines, the total and the estimated delivery date
    for line in order["lines"]:
        assert f"{line['quantity']} x {line['name']} ({line['sku']})" in body
        assert money(line["lineTotal"]["amount"], currency) in body
    assert re.search(
        rf"^Total:\s+{re.escape(money(order['total']['amount'], currency))}$", body, re.MULTILINE
    ), body
    delivery = date.fromisoformat(order["estimatedDelivery"])
    long_date = (
        f"{WEEKDAYS[delivery.weekday()]} {delivery.day} {MONTHS[delivery.month - 1]} "
        f"{delivery.year}"
    )
    assert f"Estimated delivery: {long_date} ({delivery.isoformat()})" in body

    # When the customer looks the order up with the code as printed in the email
    found = customer.data(ORDER, code=printed_code)["order"]
    # Then it is their order
    assert found == order

    # Then their order history lists it first, the older one after it
    history = customer.data(MY_ORDERS)["myOrders"]["edges"]
    assert [edge["node"]["code"] for edge in history] == [order["code"], older["code"]]
    # ... a page at a time: the first page's cursor carries on to the older order
    first_page = customer.data(HISTORY_PAGE, first=1)["myOrders"]
    assert [edge["node"] for edge in first_page["edges"]] == [
        {
            "code": order["code"],
            "lines": [{"sku": "MUG-001", "quantity": 2}, {"sku": "TEE-BLK-M", "quantity": 1}],
            "shipments": [],
        }
    ]
    assert first_page["pageInfo"]["hasNextPage"] is True
    assert first_page["pageInfo"]["endCursor"] == first_page["edges"][0]["cursor"]
    after = first_page["pageInfo"]["endCursor"]
    second_page = customer.data(HISTORY_PAGE, first=1, after=after)["myOrders"]
    assert [edge["node"] for edge in second_page["edges"]] == [
        {"code": older["code"], "lines": [{"sku": "LAMP-DESK", "quantity": 1}], "shipments": []}
    ]
    assert second_page["pageInfo"]["hasNextPage"] is False
    # ... and a cursor tampered with by one character is refused, not read
    tampered = after[:-2] + ("A" if after[-2] != "A" else "B") + after[-1]
    refused = customer.error(HISTORY_PAGE, first=1, after=tampered)
    assert error_codes(refused) == ["BAD_USER_INPUT"]

    # When the checkout is retried with the same idempotency key
    retried = place(customer, [("MUG-001", 2), ("TEE-BLK-M", 1)], key=key)
    # Then the same order comes back and no second order exists
    assert retried["code"] == order["code"]
    assert retried["total"] == order["total"]
    history = customer.data(MY_ORDERS)["myOrders"]["edges"]
    assert [edge["node"]["code"] for edge in history] == [order["code"], older["code"]]

    # When they log out
    logout = customer.data(LOGOUT)["logout"]
    assert logout == {"ok": True, "userErrors": []}

    # Then the same access token is refused at once, everywhere
    me_refused = customer.error(ME)
    assert error_codes(me_refused) == ["UNAUTHENTICATED"]
    assert me_refused.data == {"me": None}
    order_refused = customer.error(ORDER, code=printed_code)
    assert error_codes(order_refused) == ["UNAUTHENTICATED"]
    assert order_refused.data == {"order": None}

    # Then the server's logs never show the order code or the customer's email address
    logs = live_server.stderr_text()
    assert "order placed" in logs  # the log is really being written
    canonical = order["code"].replace("-", "")
    for secret in (order["code"], canonical, older["code"], address):
        assert secret not in logs


def test_another_customers_code_answers_exactly_like_an_unknown_code(
    live_server: LiveServer,
    api: Callable[..., Api],
    login: Callable[[str, str], str],
) -> None:
    # Given alice has just placed an order, which she can look up
    alice = api(login("alice@example.com", "orders-demo-2026"))
    code = place(alice, [("MUG-001", 1)], key=f"e2e-alice-{uuid.uuid4().hex}")["code"]
    assert alice.data(ORDER, code=code)["order"]["code"] == code
    # ... and a valid code that belongs to nobody
    unknown = codes.display(codes.generate())
    assert unknown != code

    # When bob asks for alice's code and for the unknown code
    bob_token = login("bob@example.com", "orders-demo-2026")
    bob = api(bob_token)
    not_his = bob.error(ORDER, code=code)
    no_such = bob.error(ORDER, code=unknown)

    # Then both answers are ORDER_NOT_FOUND and identical, field by field
    assert error_codes(not_his) == ["ORDER_NOT_FOUND"]
    assert not_his.errors == no_such.errors
    assert not_his.data == no_such.data == {"order": None}
    assert code not in str(not_his.errors)
    # ... and byte for byte on the wire
    raw = [
        httpx.post(
            live_server.graphql_url,
            json={"query": ORDER, "variables": {"code": asked}},
            headers={"Authorization": f"Bearer {bob_token}"},
            timeout=15.0,
        )
        for asked in (code, unknown)
    ]
    assert [r.status_code for r in raw] == [200, 200]
    assert raw[0].content == raw[1].content

    # When an anonymous caller asks for alice's code
    anonymous = api().error(ORDER, code=code)
    # Then it is UNAUTHENTICATED and reveals nothing, the same as for the unknown code
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    assert anonymous.data == {"order": None}
    anonymous_unknown = api().error(ORDER, code=unknown)
    assert anonymous.errors == anonymous_unknown.errors


def test_http_layer_refuses_get_queries_and_non_json_posts(live_server: LiveServer) -> None:
    url = live_server.graphql_url
    # Given the endpoint answers a query POSTed as JSON
    accepted = httpx.post(url, json={"query": "{ __typename }"}, timeout=10.0)
    assert accepted.status_code == 200
    assert accepted.json() == {"data": {"__typename": "Query"}}

    # When the same query is sent over GET (as an API client, then as a browser)
    for accept in ("application/json", "text/html"):
        refused = httpx.get(
            url, params={"query": "{__typename}"}, headers={"accept": accept}, timeout=10.0
        )
        # Then it is refused with 405, pointing at POST, and not executed
        assert refused.status_code == 405, (accept, refused.text)
        assert refused.headers["allow"] == "POST"
        assert "data" not in refused.json()
        assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    # When it is posted the ways an HTML form (or a CSRF page) can post without a preflight
    form_posts = [
        httpx.post(url, data={"query": "{ __typename }"}, timeout=10.0),
        httpx.post(url, files={"query": (None, "{ __typename }")}, timeout=10.0),
        httpx.post(
            url,
            content=b'{"query": "{ __typename }"}',
            headers={"content-type": "text/plain"},
            timeout=10.0,
        ),
    ]
    # Then each is refused with 415 and not executed
    for response in form_posts:
        sent_as = response.request.headers["content-type"]
        assert sent_as.split(";")[0] != "application/json"
        assert response.status_code == 415, (sent_as, response.text)
        assert "data" not in response.json()
