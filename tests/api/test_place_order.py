"""placeOrder: stock, payment, idempotency, the outbox, and bad input that writes nothing."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import col

from app.catalog.models import Product
from app.container import Services
from tests.conftest import Account, GraphQLClient, db_session, error_codes, sql_count

PLACE = """
mutation Place(
  $lines: [OrderLineInput!]!, $address: AddressInput!, $token: String!, $key: String!
) {
  placeOrder(lines: $lines, shippingAddress: $address, paymentToken: $token, idempotencyKey: $key) {
    order { code status estimatedDelivery subtotal { amount } shipping { amount } tax { amount }
            total { amount currency } lines { sku quantity } payment { brand last4 } }
    userErrors { field message code }
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


def variables(
    lines: list[tuple[str, int]] | None = None,
    token: str = "tok_visa",
    key: str | None = None,
    address: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "lines": [{"sku": s, "quantity": q} for s, q in (lines or [("MUG-001", 2)])],
        "address": address or ADDRESS,
        "token": token,
        "key": key or f"key-{uuid.uuid4().hex}",
    }


def stock(services: Services, sku: str) -> int:
    with db_session(services) as session:
        return int(
            session.execute(select(col(Product.stock)).where(col(Product.sku) == sku)).scalar_one()
        )


def charges(services: Services) -> int:
    return len(services.payments.transactions("charge"))  # type: ignore[attr-defined]


def test_place_order_reserves_stock_charges_and_queues_the_email(
    gql: GraphQLClient, owner: Account, services: Services, catalog: dict[str, Product]
) -> None:
    # when
    payload = gql.data(PLACE, variables([("MUG-001", 2), ("TEE-BLK-M", 1)]), token=owner.token)[
        "placeOrder"
    ]
    # then
    order = payload["order"]
    assert payload["userErrors"] == []
    assert order["status"] == "PLACED"
    assert order["subtotal"]["amount"] == 2 * 1299 + 2499
    assert order["shipping"]["amount"] == 0  # free from 50.00
    assert order["total"] == {"amount": 2 * 1299 + 2499, "currency": "EUR"}
    assert order["tax"]["amount"] == round((2 * 1299 + 2499) * 20 / 120)
    assert order["payment"] == {"brand": "VISA", "last4": "4242"}
    assert stock(services, "MUG-001") == 48 and stock(services, "TEE-BLK-M") == 19
    assert charges(services) == 1
    assert (
        sql_count(services, "SELECT count(*) FROM outbox_emails WHERE kind='order_confirmation'")
        == 1
    )


def test_small_orders_pay_shipping(
    gql: GraphQLClient, owner: Account, catalog: dict[str, Product]
) -> None:
    order = gql.data(PLACE, variables([("MUG-001", 1)]), token=owner.token)["placeOrder"]["order"]
    assert order["shipping"]["amount"] == 495
    assert order["total"]["amount"] == 1299 + 495


def test_same_idempotency_key_returns_the_same_order_and_charges_once(
    gql: GraphQLClient, owner: Account, services: Services, catalog: dict[str, Product]
) -> None:
    args = variables(key="checkout-attempt-1")
    first = gql.data(PLACE, args, token=owner.token)["placeOrder"]["order"]
    second = gql.data(PLACE, args, token=owner.token)["placeOrder"]["order"]
    assert first["code"] == second["code"]
    assert charges(services) == 1
    assert stock(services, "MUG-001") == 48
    assert sql_count(services, "SELECT count(*) FROM orders") == 1


def test_same_key_with_a_different_cart_is_a_conflict(
    gql: GraphQLClient, owner: Account, services: Services, catalog: dict[str, Product]
) -> None:
    gql.data(PLACE, variables(key="checkout-attempt-2"), token=owner.token)
    payload = gql.data(
        PLACE, variables([("MUG-001", 5)], key="checkout-attempt-2"), token=owner.token
    )["placeOrder"]
    assert payload["order"] is None
    assert payload["userErrors"][0]["code"] == "CONFLICT"
    assert sql_count(services, "SELECT count(*) FROM orders") == 1


def test_the_same_key_from_another_user_is_another_order(
    gql: GraphQLClient, owner: Account, other_customer: Account, catalog: dict[str, Product]
) -> None:
    a = gql.data(PLACE, variables(key="shared-key-123"), token=owner.token)
    b = gql.data(PLACE, variables(key="shared-key-123"), token=other_customer.token)
    assert a["placeOrder"]["order"]["code"] != b["placeOrder"]["order"]["code"]


@pytest.mark.parametrize("token", ["tok_declined", "tok_insufficient_funds", "tok_bogus"])
def test_failed_payment_leaves_no_order_no_stock_change_no_email(
    gql: GraphQLClient, owner: Account, services: Services, catalog: dict[str, Product], token: str
) -> None:
    payload = gql.data(PLACE, variables(token=token), token=owner.token)["placeOrder"]
    assert payload["order"] is None
    assert payload["userErrors"][0]["field"] == "paymentToken"
    assert payload["userErrors"][0]["code"] == "BAD_USER_INPUT"
    assert stock(services, "MUG-001") == 50
    assert sql_count(services, "SELECT count(*) FROM orders") == 0
    assert sql_count(services, "SELECT count(*) FROM outbox_emails") == 0
    assert charges(services) == 0


def test_provider_down_is_service_unavailable_and_charges_nothing(
    gql: GraphQLClient, owner: Account, services: Services, catalog: dict[str, Product]
) -> None:
    body = gql(PLACE, variables(token="tok_unavailable"), token=owner.token)
    assert error_codes(body) == ["SERVICE_UNAVAILABLE"]
    assert sql_count(services, "SELECT count(*) FROM orders") == 0
    assert charges(services) == 0
    # The stock stays reserved for the retry (another call under the same key may have
    # charged; the reconciler releases it at its expiry if nothing was).
    assert stock(services, "MUG-001") == 48
    assert (
        sql_count(services, "SELECT count(*) FROM order_reservations WHERE status = 'RESERVED'")
        == 1
    )


@pytest.mark.parametrize(
    ("lines", "address", "key", "field"),
    [
        ([("NOPE-404", 1)], None, None, "lines[0].sku"),
        ([("RETIRED-1", 1)], None, None, "lines[0].sku"),
        ([("MUG-001", 0)], None, None, "lines[0].quantity"),
        ([("MUG-001", -3)], None, None, "lines[0].quantity"),
        ([("MUG-001", 10**9)], None, None, "lines[0].quantity"),
        ([], None, None, "lines"),
        (None, {**ADDRESS, "city": "  "}, None, "shippingAddress.city"),
        (None, {**ADDRESS, "name": "x" * 500}, None, "shippingAddress.name"),
        (None, {**ADDRESS, "country": "XX"}, None, "shippingAddress.country"),
        (None, {**ADDRESS, "postalCode": "<script>"}, None, "shippingAddress.postalCode"),
        (None, None, "short", "idempotencyKey"),
        (None, None, "k" * 500, "idempotencyKey"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    gql: GraphQLClient,
    owner: Account,
    services: Services,
    catalog: dict[str, Product],
    lines: list[tuple[str, int]] | None,
    address: dict[str, str] | None,
    key: str | None,
    field: str,
) -> None:
    args = variables(lines, address=address, key=key)
    if lines == []:
        args["lines"] = []
    payload = gql.data(PLACE, args, token=owner.token)["placeOrder"]
    assert payload["order"] is None
    assert payload["userErrors"][0]["field"] == field
    assert payload["userErrors"][0]["code"] == "BAD_USER_INPUT"
    assert sql_count(services, "SELECT count(*) FROM orders") == 0
    assert charges(services) == 0


def test_out_of_stock_is_refused_with_what_is_left(
    gql: GraphQLClient, owner: Account, services: Services, catalog: dict[str, Product]
) -> None:
    payload = gql.data(PLACE, variables([("MUG-001", 1), ("LAMP-DESK", 4)]), token=owner.token)[
        "placeOrder"
    ]
    assert payload["userErrors"][0]["field"] == "lines[1].quantity"
    assert "Only 3" in payload["userErrors"][0]["message"]
    assert stock(services, "MUG-001") == 50  # the first line's reservation was rolled back
    assert charges(services) == 0


def test_anonymous_cannot_order(
    gql: GraphQLClient, services: Services, catalog: dict[str, Product]
) -> None:
    body = gql(PLACE, variables())
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert sql_count(services, "SELECT count(*) FROM orders") == 0


def test_concurrent_orders_never_oversell(
    services: Services, make_account: Callable[..., Account], place_order: Callable[..., Any]
) -> None:
    # given 3 lamps and 8 customers who each want one, at the same time
    buyers = [make_account() for _ in range(8)]
    results: list[str] = []
    lock = threading.Lock()

    def buy(account: Account) -> None:
        try:
            place_order(account, [("LAMP-DESK", 1)])
            outcome = "ok"
        except Exception as exc:
            outcome = type(exc).__name__
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=buy, args=(b,)) for b in buyers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then exactly three are sold and everyone else is told cleanly
    assert results.count("ok") == 3
    assert set(results) - {"ok"} == {"OutOfStock"}
    assert stock(services, "LAMP-DESK") == 0
    assert charges(services) == 3


def test_concurrent_retries_with_one_key_make_one_order_and_one_charge(
    services: Services, owner: Account, place_order: Callable[..., Any]
) -> None:
    codes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        view = place_order(owner, [("MUG-001", 1)], key="double-click-key")
        with lock:
            codes.append(view.order.code)

    threads = [threading.Thread(target=attempt) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(codes) == 5 and len(set(codes)) == 1
    assert charges(services) == 1
    assert stock(services, "MUG-001") == 49
