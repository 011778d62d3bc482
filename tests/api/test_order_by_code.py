"""order(code): the owner sees the order; everyone else gets exactly the unknown-code answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.security import codes
from app.security.roles import Role
from tests.conftest import Account, GraphQLClient, error_codes

ORDER = """
query Order($code: String!) {
  order(code: $code) {
    code status placedAt estimatedDelivery
    total { amount currency }
    lines { sku name quantity unitPrice { amount } lineTotal { amount } }
    shippingAddress { name line1 city postalCode country }
    payment { brand last4 }
  }
}
"""


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of a response an attacker can compare (locations are the same query)."""
    return {"data": body.get("data"), "errors": body.get("errors"), "status": body["_status"]}


def test_owner_sees_full_order_with_masked_payment(
    gql: GraphQLClient, owner: Account, place_order: Callable[..., Any]
) -> None:
    # given an order placed by the owner
    view = place_order(owner, [("MUG-001", 2), ("TEE-BLK-M", 1)])
    # when the owner looks it up by the code as printed, in lower case, with spaces
    typed = codes.display(view.order.code).lower().replace("-", " ")
    order = gql.data(ORDER, {"code": typed}, token=owner.token)["order"]
    # then the whole order comes back
    assert order["code"] == codes.display(view.order.code)
    assert order["status"] == "PLACED"
    assert order["total"] == {"amount": 1299 * 2 + 2499, "currency": "EUR"}
    assert [(line["sku"], line["quantity"]) for line in order["lines"]] == [
        ("MUG-001", 2),
        ("TEE-BLK-M", 1),
    ]
    assert order["shippingAddress"]["city"] == "Berlin"
    assert order["payment"] == {"brand": "VISA", "last4": "4242"}


def test_other_customer_gets_exactly_the_unknown_code_answer(
    gql: GraphQLClient, owner: Account, other_customer: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    unknown = codes.generate()
    not_yours = gql(ORDER, {"code": view.order.code}, token=other_customer.token)
    not_found = gql(ORDER, {"code": unknown}, token=other_customer.token)
    assert error_codes(not_yours) == ["ORDER_NOT_FOUND"]
    assert _strip(not_yours) == _strip(not_found)


def test_staff_see_only_their_own_orders_here(
    gql: GraphQLClient,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
) -> None:
    view = place_order(owner)
    for role in (Role.SUPPORT, Role.WAREHOUSE, Role.ADMIN):
        staff = make_account(role)
        body = gql(ORDER, {"code": view.order.code}, token=staff.token)
        assert error_codes(body) == ["ORDER_NOT_FOUND"], role
        assert body["data"] == {"order": None}


def test_anonymous_is_unauthenticated_and_learns_nothing(
    gql: GraphQLClient, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    real = gql(ORDER, {"code": view.order.code})
    fake = gql(ORDER, {"code": codes.generate()})
    assert error_codes(real) == ["UNAUTHENTICATED"]
    assert _strip(real) == _strip(fake)


def test_malformed_code_is_refused_before_lookup(gql: GraphQLClient, owner: Account) -> None:
    valid = codes.generate()
    wrong_check = valid[:-1] + ("0" if valid[-1] != "0" else "1")
    for bad in ["", "hello", valid[:-1], wrong_check, valid + "0", "U" * 16, "💥" * 16]:
        body = gql(ORDER, {"code": bad}, token=owner.token)
        assert error_codes(body) == ["INVALID_ORDER_CODE"], bad


def test_bad_token_is_unauthenticated(
    gql: GraphQLClient, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    body = gql(ORDER, {"code": view.order.code}, token=owner.token[:-3] + "abc")
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None or body["data"]["order"] is None
