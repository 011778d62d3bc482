"""myOrders: newest first, opaque cursors, capped pages, filters — only ever your own."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col

from app.container import Services
from app.db_rows import UnreadField, as_partial_models
from app.graphql.loaders import BatchLoader
from app.orders import history
from app.orders.models import Order
from app.orders.types import ORDER_SUMMARY_FIELDS
from app.security import codes
from app.shipments.types import SHIPMENT_SUMMARY_FIELDS
from tests.conftest import Account, GraphQLClient, Run, db_session, error_codes
from tests.support.carriers import pack, ship

MY_ORDERS = """
query Mine($first: Int, $after: String, $filter: OrderFilterInput) {
  myOrders(first: $first, after: $after, filter: $filter) {
    edges { cursor node { code status placedAt lines { name } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def backdate(services: Services, code: str, days: int) -> None:
    with db_session(services) as session:
        session.execute(
            update(Order)
            .where(col(Order.code) == code)
            .values(placed_at=datetime.now(UTC) - timedelta(days=days))
        )
        session.commit()


def test_pages_newest_first_with_opaque_cursors(
    gql: GraphQLClient, services: Services, owner: Account, place_order: Callable[..., Any]
) -> None:
    # given five orders placed on five different days
    placed = []
    for days in (5, 1, 3, 2, 4):
        view = place_order(owner)
        backdate(services, view.order.code, days)
        placed.append((days, codes.display(view.order.code)))
    expected = [code for _, code in sorted(placed)]
    # when paging two at a time
    seen: list[str] = []
    after = None
    while True:
        page = gql.data(MY_ORDERS, {"first": 2, "after": after}, token=owner.token)["myOrders"]
        seen += [edge["node"]["code"] for edge in page["edges"]]
        for edge in page["edges"]:
            raw = base64.urlsafe_b64decode(edge["cursor"] + "==")
            # the cursor gives away neither the code nor anything readable
            assert edge["node"]["code"].replace("-", "").encode() not in raw
            assert b"order" not in raw
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    # then every order came once, newest first
    assert seen == expected


def test_only_your_own_orders(
    gql: GraphQLClient, owner: Account, other_customer: Account, place_order: Callable[..., Any]
) -> None:
    mine = place_order(owner)
    place_order(other_customer)
    edges = gql.data(MY_ORDERS, {}, token=owner.token)["myOrders"]["edges"]
    assert [e["node"]["code"] for e in edges] == [codes.display(mine.order.code)]


def test_a_cursor_from_another_account_shows_nothing_of_theirs(
    gql: GraphQLClient, owner: Account, other_customer: Account, place_order: Callable[..., Any]
) -> None:
    for _ in range(3):
        place_order(other_customer)
    theirs = gql.data(MY_ORDERS, {"first": 1}, token=other_customer.token)["myOrders"]
    cursor = theirs["pageInfo"]["endCursor"]
    mine = gql.data(MY_ORDERS, {"first": 5, "after": cursor}, token=owner.token)["myOrders"]
    assert mine["edges"] == []


def test_forged_cursor_is_bad_input(gql: GraphQLClient, owner: Account) -> None:
    for bad in ["abc", "x" * 600, base64.urlsafe_b64encode(b'["order",[1]]').decode()]:
        body = gql(MY_ORDERS, {"after": bad}, token=owner.token)
        assert error_codes(body) == ["BAD_USER_INPUT"], bad


def test_page_size_is_capped(gql: GraphQLClient, owner: Account, services: Services) -> None:
    limit = services.settings.max_page_size
    assert error_codes(gql(MY_ORDERS, {"first": limit + 1}, token=owner.token)) == [
        "BAD_USER_INPUT"
    ]
    assert error_codes(gql(MY_ORDERS, {"first": 0}, token=owner.token)) == ["BAD_USER_INPUT"]


def test_filters_by_status_date_and_item_text(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    place_order: Callable[..., Any],
    run: Run[Any],
) -> None:
    mugs = place_order(owner, [("MUG-001", 1)])
    lamp = place_order(owner, [("LAMP-DESK", 1)])
    old_tee = place_order(owner, [("TEE-BLK-M", 1)])
    backdate(services, old_tee.order.code, 40)
    run(services.orders.cancel_order(owner.viewer, lamp.order.code, "10.0.0.1"))

    def codes_for(filt: dict[str, Any]) -> set[str]:
        edges = gql.data(MY_ORDERS, {"filter": filt}, token=owner.token)["myOrders"]["edges"]
        return {e["node"]["code"] for e in edges}

    assert codes_for({"status": ["CANCELLED"]}) == {codes.display(lamp.order.code)}
    assert codes_for({"text": "lamp"}) == {codes.display(lamp.order.code)}
    assert codes_for({"text": "t-shirt"}) == {codes.display(old_tee.order.code)}
    month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    assert codes_for({"placedFrom": month_ago}) == {
        codes.display(mugs.order.code),
        codes.display(lamp.order.code),
    }
    assert codes_for({"placedTo": month_ago}) == {codes.display(old_tee.order.code)}
    assert codes_for({"text": "%"}) == set()  # LIKE wildcards are literal


def test_anonymous_gets_unauthenticated(gql: GraphQLClient) -> None:
    assert error_codes(gql(MY_ORDERS, {})) == ["UNAUTHENTICATED"]


PAGE_WITH_CHILDREN = [
    # plain fields (a compiled plan), and the same through a fragment (the general path)
    "{ myOrders(first: 5) { edges { node { code lines { sku } shipments { status } } } } }",
    "{ myOrders(first: 5) { edges { node { ...O } } } } "
    "fragment O on Order { code lines { sku } shipments { status } }",
]


def test_a_page_fetches_the_lines_and_parcels_it_selects_with_the_page(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    place_order: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given three orders, and every loader call recorded
    placed = [place_order(owner) for _ in range(3)]
    loaded: list[str] = []
    original = BatchLoader.load

    def recording(self: BatchLoader[Any], key: int) -> Any:
        loaded.append(type(self).__name__)
        return original(self, key)

    monkeypatch.setattr(BatchLoader, "load", recording)
    counted = services.db.count_statements()
    for query in PAGE_WITH_CHILDREN:
        del counted[:]
        # when the page asks for its orders' lines and parcels
        edges = gql.data(query, token=owner.token)["myOrders"]["edges"]
        # then they come with the page, no loader round per order, one statement each
        assert len(edges) == 3
        assert all(edge["node"]["lines"] and edge["node"]["shipments"] == [] for edge in edges)
        assert {edge["node"]["code"] for edge in edges} == {
            codes.display(view.order.code) for view in placed
        }
        assert loaded == [], query
        assert sum("order_lines" in sql for sql in counted) == 1, counted
        assert sum("FROM shipments" in sql for sql in counted) == 1, counted
    # and a page that does not select them does not fetch them
    del counted[:]
    gql.data("{ myOrders(first: 5) { edges { node { code } } } }", token=owner.token)
    assert not any("order_lines" in sql or "FROM shipments" in sql for sql in counted), counted


def _summary_then_full(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    query_of: Callable[[str], str],
    extra: str,
    table: str,
    unread_column: str,
) -> tuple[list[Any], list[Any]]:
    """The page `query_of("")` (summary fields only) and `query_of(extra)` (one more),
    each checked to read `unread_column` from `table` only when it asks for more."""
    counted = services.db.count_statements()
    pages = []
    for more in ("", extra):
        del counted[:]
        pages.append(gql.data(query_of(more), token=owner.token)["myOrders"]["edges"])
        (sql,) = [sql for sql in counted if f"FROM {table}" in sql]
        # the summary page reads the summary columns only, the other whole rows
        assert (unread_column in sql) == bool(more), sql
    return pages[0], pages[1]


SUMMARY_NODE = """
  __typename code status placedAt total { amount currency }
  lines { sku name quantity unitPrice { amount currency } }
  shipments { carrier status }
"""


def test_a_page_of_summary_fields_reads_only_the_summary_columns_and_answers_the_same(
    gql: GraphQLClient, services: Services, owner: Account, place_order: Callable[..., Any]
) -> None:
    # given three orders
    for _ in range(3):
        place_order(owner)
    top_level = re.sub(r"\{[^{}]*\}", "", re.sub(r"\{[^{}]*\}", "", SUMMARY_NODE)).split()
    assert set(top_level) == ORDER_SUMMARY_FIELDS  # every one of them is asked for below
    # when a page asks for every field of ORDER_SUMMARY_FIELDS, then for those and one more
    summaries, fulls = _summary_then_full(
        gql,
        services,
        owner,
        lambda more: (
            f"{{ myOrders(first: 2) {{ edges {{ cursor node {{ {SUMMARY_NODE} {more} }} }} }} }}"
        ),
        "updatedAt",
        "orders",
        "orders.ship_name",
    )
    # then both answer the same for the fields they share
    for summary, full in zip(summaries, fulls, strict=True):
        assert full["node"].pop("updatedAt")
        assert summary == full
    assert len(summaries) == 2


def test_a_summary_order_refuses_a_field_its_statement_did_not_read() -> None:
    (order,) = as_partial_models(
        Order,
        history._FIRST_SUMMARIES,
        [(7, "ABCD", 3, "PAID", "EUR", 1299, "2026-11-30 16:24:39.000000")],
    )
    assert (order.id, order.code, order.total_minor) == (7, "ABCD", 1299)
    assert order.placed_at == datetime(2026, 11, 30, 16, 24, 39, tzinfo=UTC)
    # a default (an empty address, a zero) would be a wrong answer: it raises instead
    with pytest.raises(UnreadField, match=r"OrderRow.ship_name was not selected"):
        _ = order.ship_name


SUMMARY_PARCEL = "__typename carrier status estimatedDelivery lines { sku } events { status }"


def test_a_page_of_summary_parcel_fields_reads_only_their_columns_and_answers_the_same(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    warehouse: Account,
    place_order: Callable[..., Any],
    run: Run[Any],
) -> None:
    # given two shipped orders
    for _ in range(2):
        order = place_order(owner, [("MUG-001", 1)]).order
        pack(run, services, warehouse, order)
        ship(run, services, warehouse, order)
    top_level = re.sub(r"\{[^{}]*\}", "", SUMMARY_PARCEL).split()
    assert set(top_level) == SHIPMENT_SUMMARY_FIELDS  # every one of them is asked for below
    # when a page asks for every parcel field of SHIPMENT_SUMMARY_FIELDS, then one more
    summaries, fulls = _summary_then_full(
        gql,
        services,
        owner,
        lambda more: (
            f"{{ myOrders(first: 2) {{ edges {{ node {{ code shipments {{ {SUMMARY_PARCEL} "
            f"{more} }} }} }} }} }}"
        ),
        "trackingNumber",
        "shipments",
        "shipments.tracking_number",
    )
    # then both answer the same for the fields they share
    for summary, full in zip(summaries, fulls, strict=True):
        (parcel,) = full["node"]["shipments"]
        assert parcel.pop("trackingNumber")
        assert summary == full
        assert summary["node"]["shipments"][0]["lines"] == [{"sku": "MUG-001"}]
