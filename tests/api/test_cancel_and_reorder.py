"""cancelOrder (owner, before shipment: refund, stock back, email) and reorder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlmodel import col

from app.catalog.models import Product
from app.container import Services
from app.orders.models import Order
from app.security import codes
from app.security.roles import Role
from tests.conftest import Account, GraphQLClient, db_session, error_codes, sql_count

CANCEL = """
mutation Cancel($code: String!) {
  cancelOrder(code: $code) {
    order { code status refunded { amount } }
    userErrors { field message code }
  }
}
"""
REORDER = """
query Again($code: String!) {
  reorder(code: $code) {
    lines { sku quantity unitPrice { amount } available inStock }
    total { amount } unavailableSkus
  }
}
"""


def stock(services: Services, sku: str) -> int:
    with db_session(services) as session:
        return int(
            session.execute(select(col(Product.stock)).where(col(Product.sku) == sku)).scalar_one()
        )


def test_owner_cancels_before_shipment_refund_stock_email(
    gql: GraphQLClient, services: Services, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner, [("MUG-001", 3)])
    assert stock(services, "MUG-001") == 47
    payload = gql.data(CANCEL, {"code": view.order.code}, token=owner.token)["cancelOrder"]
    assert payload["userErrors"] == []
    assert payload["order"]["status"] == "CANCELLED"
    assert payload["order"]["refunded"]["amount"] == view.order.total_minor
    assert stock(services, "MUG-001") == 50
    refunds = services.payments.transactions("refund")  # type: ignore[attr-defined]
    assert [r.amount_minor for r in refunds] == [view.order.total_minor]
    assert (
        sql_count(services, "SELECT count(*) FROM outbox_emails WHERE kind='order_cancelled'") == 1
    )


def test_cancelling_twice_refunds_once(
    gql: GraphQLClient, services: Services, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    gql.data(CANCEL, {"code": view.order.code}, token=owner.token)
    again = gql.data(CANCEL, {"code": view.order.code}, token=owner.token)["cancelOrder"]
    assert again["userErrors"][0]["code"] == "CONFLICT"
    assert len(services.payments.transactions("refund")) == 1  # type: ignore[attr-defined]
    assert stock(services, "MUG-001") == 50


def test_shipped_order_cannot_be_cancelled_and_nothing_changes(
    gql: GraphQLClient, services: Services, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    with db_session(services) as session:
        session.execute(
            update(Order).where(col(Order.code) == view.order.code).values(status="SHIPPED")
        )
        session.commit()
    payload = gql.data(CANCEL, {"code": view.order.code}, token=owner.token)["cancelOrder"]
    assert payload["userErrors"][0]["code"] == "CONFLICT"
    assert services.payments.transactions("refund") == []  # type: ignore[attr-defined]
    assert stock(services, "MUG-001") == 48


def test_others_cannot_cancel_and_learn_nothing(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
) -> None:
    view = place_order(owner)
    unknown = codes.generate()
    for role in (Role.CUSTOMER, Role.SUPPORT, Role.WAREHOUSE, Role.ADMIN):
        someone = make_account(role)
        theirs = gql(CANCEL, {"code": view.order.code}, token=someone.token)
        nothing = gql(CANCEL, {"code": unknown}, token=someone.token)
        assert error_codes(theirs) == ["ORDER_NOT_FOUND"], role
        assert theirs["errors"][0]["message"] == nothing["errors"][0]["message"]
        assert theirs["data"] == nothing["data"]
    assert error_codes(gql(CANCEL, {"code": view.order.code})) == ["UNAUTHENTICATED"]
    assert services.payments.transactions("refund") == []  # type: ignore[attr-defined]


def test_reorder_prices_at_today_and_shows_availability(
    gql: GraphQLClient, services: Services, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner, [("MUG-001", 2), ("LAMP-DESK", 2)])
    with db_session(services) as session:
        session.execute(
            update(Product).where(col(Product.sku) == "MUG-001").values(price_minor=1500)
        )
        session.execute(update(Product).where(col(Product.sku) == "LAMP-DESK").values(stock=1))
        session.commit()
    cart = gql.data(REORDER, {"code": view.order.code}, token=owner.token)["reorder"]
    lines = {line["sku"]: line for line in cart["lines"]}
    assert lines["MUG-001"]["unitPrice"]["amount"] == 1500
    assert lines["MUG-001"]["available"] is True
    assert lines["LAMP-DESK"]["available"] is False and lines["LAMP-DESK"]["inStock"] == 1
    assert cart["unavailableSkus"] == ["LAMP-DESK"]
    assert cart["total"]["amount"] == 2 * 1500 + 495
    assert sql_count(services, "SELECT count(*) FROM orders") == 1  # nothing was ordered


def test_reorder_of_someone_elses_code_is_not_found(
    gql: GraphQLClient, owner: Account, other_customer: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    assert error_codes(gql(REORDER, {"code": view.order.code}, token=other_customer.token)) == [
        "ORDER_NOT_FOUND"
    ]
