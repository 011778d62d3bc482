"""startCheckout / updateCheckout / checkout / placeOrder(checkoutCode): the code shown on
the summary is the order's code; checkouts are private, rate-limited and expire."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col
from starlette.testclient import TestClient

from app.catalog.models import Product
from app.container import Services, build_services
from app.db import utcnow
from app.main import create_app
from app.orders.inputs import LineInput
from app.orders.models import Checkout
from app.security import codes
from app.security.roles import Role
from app.settings import Settings
from tests.conftest import ADDRESS as SERVICE_ADDRESS
from tests.conftest import (
    FAST_PASSWORDS,
    Account,
    GraphQLClient,
    Run,
    db_session,
    error_codes,
    sql_count,
)

FIELDS = """
  code status expiresAt estimatedDelivery
  lines { sku quantity unitPrice { amount } available inStock }
  subtotal { amount } shipping { amount } tax { amount } total { amount currency }
"""
START = f"""
mutation Start($lines: [OrderLineInput!]!, $address: AddressInput!) {{
  startCheckout(lines: $lines, shippingAddress: $address) {{
    checkout {{ {FIELDS} }} userErrors {{ field message code }}
  }}
}}"""
UPDATE = f"""
mutation Update($code: String!, $lines: [OrderLineInput!], $address: AddressInput) {{
  updateCheckout(code: $code, lines: $lines, shippingAddress: $address) {{
    checkout {{ {FIELDS} }} userErrors {{ field message code }}
  }}
}}"""
GET = f"query Get($code: String!) {{ checkout(code: $code) {{ {FIELDS} }} }}"
PLACE = """
mutation Place($code: String!, $token: String!) {
  placeOrder(checkoutCode: $code, paymentToken: $token) {
    order { code status total { amount } lines { sku quantity } }
    userErrors { field message code }
  }
}"""
ORDER = "query O($code: String!) { order(code: $code) { code status } }"
ADDRESS = {
    "name": "Alice Example",
    "line1": "1 Demo Street",
    "city": "Berlin",
    "postalCode": "10115",
    "country": "DE",
}


def start(
    gql: GraphQLClient, account: Account, lines: list[tuple[str, int]] | None = None
) -> dict[str, Any]:
    args = {
        "lines": [{"sku": s, "quantity": q} for s, q in (lines or [("MUG-001", 2)])],
        "address": ADDRESS,
    }
    payload = gql.data(START, args, token=account.token)["startCheckout"]
    assert payload["userErrors"] == []
    checkout: dict[str, Any] = payload["checkout"]
    return checkout


def charges(services: Services) -> int:
    return len(services.payments.transactions("charge"))  # type: ignore[attr-defined]


def stock(services: Services, sku: str) -> int:
    return sql_count(services, f"SELECT stock FROM products WHERE sku='{sku}'")


def test_summary_shows_prices_delivery_and_a_valid_code_without_taking_stock(
    gql: GraphQLClient, services: Services, owner: Account, catalog: dict[str, Product]
) -> None:
    checkout = start(gql, owner, [("MUG-001", 2), ("LAMP-DESK", 1)])
    assert codes.is_valid_canonical(codes.normalise(checkout["code"]))
    assert checkout["status"] == "OPEN"
    assert checkout["subtotal"]["amount"] == 2 * 1299 + 4999
    assert checkout["total"] == {"amount": 2 * 1299 + 4999, "currency": "EUR"}
    assert [line["available"] for line in checkout["lines"]] == [True, True]
    assert checkout["estimatedDelivery"]
    assert sql_count(services, "SELECT sum(stock) FROM products WHERE sku='MUG-001'") == 50
    assert sql_count(services, "SELECT count(*) FROM orders") == 0
    assert charges(services) == 0


def test_placing_the_checkout_creates_the_order_with_the_same_code(
    gql: GraphQLClient, services: Services, owner: Account, catalog: dict[str, Product]
) -> None:
    noted = start(gql, owner)["code"]  # the customer writes this down
    payload = gql.data(PLACE, {"code": noted, "token": "tok_visa"}, token=owner.token)
    order = payload["placeOrder"]["order"]
    assert order["code"] == noted
    assert gql.data(ORDER, {"code": noted}, token=owner.token)["order"]["code"] == noted
    emails = sql_count(
        services,
        f"SELECT count(*) FROM outbox_emails WHERE body_text LIKE '%{noted}%' "
        "AND kind='order_confirmation'",
    )
    assert emails == 1
    assert gql.data(GET, {"code": noted}, token=owner.token)["checkout"]["status"] == "PLACED"


def test_placing_twice_returns_the_same_order_and_charges_once(
    gql: GraphQLClient, services: Services, owner: Account, catalog: dict[str, Product]
) -> None:
    code = start(gql, owner)["code"]
    first = gql.data(PLACE, {"code": code, "token": "tok_visa"}, token=owner.token)
    second = gql.data(PLACE, {"code": code, "token": "tok_visa"}, token=owner.token)
    assert first["placeOrder"]["order"]["code"] == second["placeOrder"]["order"]["code"] == code
    assert charges(services) == 1
    assert sql_count(services, "SELECT count(*) FROM orders") == 1


def test_concurrent_double_placement_makes_one_order_and_one_charge(
    services: Services, owner: Account, catalog: dict[str, Product], run: Run[Any]
) -> None:
    view = run(services.checkouts.start(owner.viewer, [LineInput("MUG-001", 1)], SERVICE_ADDRESS))
    results: list[str] = []
    lock = threading.Lock()

    def place() -> None:
        order = run(
            services.checkouts.place(owner.viewer, view.checkout.code, "10.0.0.1", "tok_visa")
        )
        with lock:
            results.append(order.order.code)

    threads = [threading.Thread(target=place) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [view.checkout.code] * 4
    assert charges(services) == 1
    assert sql_count(services, "SELECT count(*) FROM orders") == 1
    assert sql_count(services, "SELECT stock FROM products WHERE sku='MUG-001'") == 49


def test_update_reprices_and_keeps_the_code(
    gql: GraphQLClient, services: Services, owner: Account, catalog: dict[str, Product]
) -> None:
    checkout = start(gql, owner)
    with db_session(services) as session:
        session.execute(
            update(Product).where(col(Product.sku) == "MUG-001").values(price_minor=1000)
        )
        session.commit()
    updated = gql.data(
        UPDATE,
        {"code": checkout["code"], "lines": [{"sku": "MUG-001", "quantity": 3}]},
        token=owner.token,
    )["updateCheckout"]["checkout"]
    assert updated["code"] == checkout["code"]
    assert updated["subtotal"]["amount"] == 3000
    assert updated["lines"][0]["unitPrice"]["amount"] == 1000


def test_price_change_after_the_summary_is_refused_with_the_new_figures(
    gql: GraphQLClient, services: Services, owner: Account, catalog: dict[str, Product]
) -> None:
    code = start(gql, owner)["code"]
    with db_session(services) as session:
        session.execute(
            update(Product).where(col(Product.sku) == "MUG-001").values(price_minor=1499)
        )
        session.commit()
    payload = gql.data(PLACE, {"code": code, "token": "tok_visa"}, token=owner.token)["placeOrder"]
    assert payload["order"] is None
    assert payload["userErrors"][0]["code"] == "CONFLICT"
    assert "1299" in payload["userErrors"][0]["message"]
    assert "1499" in payload["userErrors"][0]["message"]
    assert charges(services) == 0
    assert stock(services, "MUG-001") == 50
    # accepting the new price: reprice, then place
    gql.data(UPDATE, {"code": code}, token=owner.token)
    placed = gql.data(PLACE, {"code": code, "token": "tok_visa"}, token=owner.token)
    assert placed["placeOrder"]["order"]["total"]["amount"] == 2 * 1499 + 495


def test_stock_gone_since_the_summary_is_refused(
    gql: GraphQLClient, services: Services, owner: Account, catalog: dict[str, Product]
) -> None:
    code = start(gql, owner, [("LAMP-DESK", 3)])["code"]
    with db_session(services) as session:
        session.execute(update(Product).where(col(Product.sku) == "LAMP-DESK").values(stock=1))
        session.commit()
    payload = gql.data(PLACE, {"code": code, "token": "tok_visa"}, token=owner.token)["placeOrder"]
    assert payload["userErrors"][0]["code"] == "BAD_USER_INPUT"
    assert "Only 1" in payload["userErrors"][0]["message"]
    assert charges(services) == 0


@pytest.mark.parametrize("operation", ["get", "update", "place"])
def test_other_customer_and_unknown_code_get_the_same_answer(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    other_customer: Account,
    make_account: Callable[..., Account],
    catalog: dict[str, Product],
    operation: str,
) -> None:
    code = start(gql, owner)["code"]
    query, extra = {
        "get": (GET, {}),
        "update": (UPDATE, {}),
        "place": (PLACE, {"token": "tok_visa"}),
    }[operation]
    for who in (other_customer, make_account(Role.SUPPORT), make_account(Role.ADMIN)):
        theirs = gql(query, {"code": code, **extra}, token=who.token)
        unknown = gql(query, {"code": codes.generate(), **extra}, token=who.token)
        assert error_codes(theirs) == ["ORDER_NOT_FOUND"]
        assert theirs["errors"][0]["message"] == unknown["errors"][0]["message"]
        assert theirs["data"] == unknown["data"]
    assert error_codes(gql(query, {"code": code, **extra})) == ["UNAUTHENTICATED"]
    assert charges(services) == 0


def test_anonymous_cannot_start_a_checkout(gql: GraphQLClient, catalog: dict[str, Product]) -> None:
    body = gql(START, {"lines": [{"sku": "MUG-001", "quantity": 1}], "address": ADDRESS})
    assert error_codes(body) == ["UNAUTHENTICATED"]


def test_bad_input_is_refused_and_nothing_is_reserved(
    gql: GraphQLClient, services: Services, owner: Account, catalog: dict[str, Product]
) -> None:
    body = gql.data(
        START, {"lines": [{"sku": "NOPE", "quantity": 1}], "address": ADDRESS}, token=owner.token
    )
    assert body["startCheckout"]["userErrors"][0]["field"] == "lines[0].sku"
    assert sql_count(services, "SELECT count(*) FROM checkouts") == 0


def test_checkout_lookups_are_charged_to_the_code_limiter(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    catalog: dict[str, Product],
    run: Run[Any],
) -> None:
    code = start(gql, owner)["code"]
    before = run(
        services.limiter.remaining(
            services.limiter.lookups_per_user, f"user:{owner.viewer.public_id}"
        )
    )
    aliased = (
        "query Q($c: String!) { a: checkout(code: $c) { code } b: checkout(code: $c) { code } }"
    )
    gql.data(aliased, {"c": code}, token=owner.token)
    after = run(
        services.limiter.remaining(
            services.limiter.lookups_per_user, f"user:{owner.viewer.public_id}"
        )
    )
    assert before - after == 2


@pytest.fixture
def short_lived(settings: Settings) -> Iterator[tuple[GraphQLClient, Services]]:
    quick = replace(settings, checkout_ttl_seconds=60)
    built = build_services(quick, passwords=FAST_PASSWORDS)
    with TestClient(
        create_app(quick, run_sender=False, services=built), client=("10.0.0.1", 50000)
    ) as http:
        yield GraphQLClient(http), built


def test_expired_checkout_answers_like_an_unknown_code_and_never_becomes_an_order(
    short_lived: tuple[GraphQLClient, Services], catalog: dict[str, Product], owner: Account
) -> None:
    gql, services = short_lived
    code = start(gql, owner)["code"]
    with db_session(services) as session:
        session.execute(update(Checkout).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    for query, extra in ((GET, {}), (UPDATE, {}), (PLACE, {"token": "tok_visa"})):
        expired = gql(query, {"code": code, **extra}, token=owner.token)
        unknown = gql(query, {"code": codes.generate(), **extra}, token=owner.token)
        assert error_codes(expired) == ["ORDER_NOT_FOUND"]
        assert expired["errors"][0]["message"] == unknown["errors"][0]["message"]
    assert sql_count(services, "SELECT count(*) FROM orders") == 0
    assert charges(services) == 0


def test_checkout_lifetime_is_configurable(
    short_lived: tuple[GraphQLClient, Services], catalog: dict[str, Product], owner: Account
) -> None:
    gql, services = short_lived
    start(gql, owner)
    with db_session(services) as session:
        checkout = session.execute(select(Checkout)).scalar_one()
        lifetime = checkout.expires_at - checkout.created_at
    assert timedelta(seconds=59) <= lifetime <= timedelta(seconds=61)
