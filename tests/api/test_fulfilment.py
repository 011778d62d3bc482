"""Fulfilment through the API: who may use each door (anonymous, owner, other customer,
SUPPORT, WAREHOUSE, ADMIN), the pick list, packing by scan, split shipments, shipping,
the shipping email, and the order status moving only along legal transitions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from app.container import Services, build_services
from app.main import create_app
from app.orders.service import OrderView
from app.security import codes
from app.security.roles import Role
from app.settings import Settings
from tests.conftest import (
    FAST_PASSWORDS,
    PASSWORD,
    Account,
    GraphQLClient,
    Run,
    db_session,
    error_codes,
    sql_count,
)
from tests.support.actors import Cast, make_cast
from tests.support.carriers import (
    ADD_EVENT,
    PACK,
    PICK_LIST,
    QUEUE,
    SHIP,
    order_status,
    pack,
    scans,
    ship,
    strip,
)


@pytest.fixture
def cast(owner: Account, other_customer: Account, make_account: Callable[..., Account]) -> Cast:
    return make_cast(owner, other_customer, make_account)


def count(services: Services, table: str) -> int:
    return sql_count(services, f"SELECT count(*) FROM {table}")


# -- who may do what ----------------------------------------------------------------------

READERS = {"SUPPORT", "WAREHOUSE", "ADMIN"}
WRITERS = {"WAREHOUSE", "ADMIN"}
REFUSAL = {"anonymous": "UNAUTHENTICATED"}  # everyone else without the role: FORBIDDEN


def test_fulfillment_queue_role_matrix(
    gql: GraphQLClient, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order waiting to be picked
    view = place_order(cast.owner)
    for who, token in cast.tokens().items():
        # when each kind of caller asks for the queue
        body = gql(QUEUE, {"first": 10}, token=token)
        # then staff who may read see the order; everyone else is refused, and sees nothing
        if who in READERS:
            assert not body.get("errors"), (who, body)
            codes_seen = [e["node"]["code"] for e in body["data"]["fulfillmentQueue"]["edges"]]
            assert codes_seen == [codes.display(view.order.code)], who
        else:
            assert error_codes(body) == [REFUSAL.get(who, "FORBIDDEN")], who
            assert body["data"] is None, who


def test_pick_list_role_matrix_and_no_existence_oracle(
    gql: GraphQLClient, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given a real order and a valid code that belongs to no order
    view = place_order(cast.owner)
    unknown = codes.generate()
    for who, token in cast.tokens().items():
        # when each caller asks for the pick list of both
        real = gql(PICK_LIST, {"code": view.order.code}, token=token)
        fake = gql(PICK_LIST, {"code": unknown}, token=token)
        if who in READERS:
            # then readers get the real pick list, and ORDER_NOT_FOUND for the unknown code
            assert real["data"]["pickList"]["code"] == codes.display(view.order.code), who
            assert error_codes(fake) == ["ORDER_NOT_FOUND"], who
        else:
            # then everyone else gets one answer for both: the code's existence is not told
            assert error_codes(real) == [REFUSAL.get(who, "FORBIDDEN")], who
            assert strip(real) == strip(fake), who


def _write_doors(code: str, sku: str = "MUG-001") -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("packOrder", PACK, {"code": code, "scans": [sku, sku]}),
        ("shipOrder", SHIP, {"code": code, "carrier": "DHL", "tracking": "TRACK-0001"}),
        (
            "addTrackingEvent",
            ADD_EVENT,
            {"code": code, "carrier": "DHL", "tracking": "TRACK-0001", "status": "IN_TRANSIT"},
        ),
    ]


def test_write_doors_refuse_everyone_but_warehouse_and_admin_and_change_nothing(
    gql: GraphQLClient, services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order of two mugs, and a valid code that belongs to no order
    view = place_order(cast.owner, [("MUG-001", 2)])
    unknown = codes.generate()
    for who, token in cast.tokens().items():
        if who in WRITERS:
            continue
        for name, document, variables in _write_doors(view.order.code):
            # when a caller without the role uses a fulfilment mutation on both codes
            real = gql(document, variables, token=token)
            fake = gql(document, {**variables, "code": unknown}, token=token)
            # then it is refused at the top level, the same way for both codes
            assert error_codes(real) == [REFUSAL.get(who, "FORBIDDEN")], (who, name)
            assert real["data"] is None or real["data"][name] is None, (who, name)
            assert strip(real) == strip(fake), (who, name)
    # then nothing was packed or shipped, no event recorded, the order did not move
    assert (count(services, "packs"), count(services, "shipments")) == (0, 0)
    assert count(services, "tracking_events") == 0
    assert order_status(services, view.order) == "PLACED"


@pytest.mark.parametrize("role", [Role.WAREHOUSE, Role.ADMIN])
def test_warehouse_and_admin_pack_ship_and_add_events(
    gql: GraphQLClient,
    services: Services,
    make_account: Callable[..., Account],
    owner: Account,
    place_order: Callable[..., OrderView],
    role: Role,
) -> None:
    # given an order of two mugs and a member of staff with a fulfilment role
    staff = make_account(role)
    view = place_order(owner, [("MUG-001", 2)])
    code = view.order.code
    # when they pack it, ship it and record an event
    packed = gql.data(PACK, {"code": code, "scans": ["MUG-001", "MUG-001"]}, token=staff.token)
    shipped = gql.data(
        SHIP, {"code": code, "carrier": "DHL", "tracking": "TRACK-0001"}, token=staff.token
    )
    tracked = gql.data(
        ADD_EVENT,
        {"code": code, "carrier": "DHL", "tracking": "TRACK-0001", "status": "IN_TRANSIT"},
        token=staff.token,
    )
    # then each step went through and moved the order on
    assert packed["packOrder"]["userErrors"] == []
    assert packed["packOrder"]["order"]["status"] == "PACKED"
    assert shipped["shipOrder"]["order"]["status"] == "SHIPPED"
    assert shipped["shipOrder"]["shipment"]["status"] == "LABEL_CREATED"
    assert tracked["addTrackingEvent"]["recorded"] is True
    assert tracked["addTrackingEvent"]["shipment"]["status"] == "IN_TRANSIT"
    assert count(services, "tracking_events") == 1


def test_staff_with_the_role_get_order_not_found_for_an_unknown_code(
    gql: GraphQLClient, services: Services, cast: Cast
) -> None:
    # given a valid code that belongs to no order
    unknown = codes.generate()
    for name, document, variables in _write_doors(unknown):
        # when the warehouse uses it
        body = gql(document, variables, token=cast.warehouse.token)
        # then the answer is ORDER_NOT_FOUND
        assert error_codes(body) == ["ORDER_NOT_FOUND"], name
    # and a malformed code is refused before any lookup
    typo = gql(PICK_LIST, {"code": "ABCD-EFGH"}, token=cast.warehouse.token)
    assert error_codes(typo) == ["INVALID_ORDER_CODE"]


@pytest.fixture
def tight_budget(settings: Settings) -> Iterator[tuple[Services, GraphQLClient, Run[Any]]]:
    """Services with a staff lookup budget of their own (staff at their doors spend it, not
    the customer budget), their app (which closes them when it stops) and a `run` on that
    app's event loop."""
    limited = replace(
        settings, rate_limits=replace(settings.rate_limits, staff_lookups_per_user="3/minute")
    )
    built = build_services(limited, passwords=FAST_PASSWORDS)
    with TestClient(create_app(limited, run_sender=False, services=built)) as client:
        portal = client.portal
        assert portal is not None

        def run_there(awaitable: Awaitable[Any]) -> Any:
            async def wait() -> Any:
                return await awaitable

            return portal.call(wait)

        yield built, GraphQLClient(client), run_there


def test_staff_code_doors_are_charged_to_the_limiter_once_per_resolution(
    tight_budget: tuple[Services, GraphQLClient, Run[Any]],
    make_account: Callable[..., Account],
) -> None:
    # given a warehouse account with a staff budget of three code lookups a minute
    services, gql, run = tight_budget
    make_account(Role.WAREHOUSE, email="picker@example.com")
    token = run(services.accounts.login("picker@example.com", PASSWORD, "10.0.0.1")).access_token
    code = codes.generate()
    # when one request asks for five pick lists through aliases
    fields = " ".join(f'p{i}: pickList(code: "{code}") {{ code }}' for i in range(5))
    body = gql(f"query {{ {fields} }}", token=token)
    # then three were looked up (not found) and two were refused by the limiter
    assert sorted(error_codes(body)) == ["ORDER_NOT_FOUND"] * 3 + ["RATE_LIMITED"] * 2


# -- pick list and queue ------------------------------------------------------------------


def test_pick_list_is_sorted_by_bin_location(
    gql: GraphQLClient, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order whose lines were entered in no particular aisle order
    view = place_order(cast.owner, [("LAMP-DESK", 1), ("TEE-BLK-M", 2), ("MUG-001", 3)])
    # when the warehouse opens the pick list (code typed in lower case with spaces)
    typed = codes.display(view.order.code).lower().replace("-", " ")
    pick = gql.data(PICK_LIST, {"code": typed}, token=cast.warehouse.token)["pickList"]
    # then the lines come in bin order, with name, quantity to pick and bin
    assert [(line["binLocation"], line["sku"], line["quantity"]) for line in pick["lines"]] == [
        ("A-01-03", "MUG-001", 3),
        ("B-04-01", "TEE-BLK-M", 2),
        ("D-10-04", "LAMP-DESK", 1),
    ]
    assert pick["lines"][0]["name"] == "Enamel camping mug"
    assert pick["shippingAddress"]["city"] == "Berlin"
    assert pick["status"] == "PLACED"


def test_queue_is_oldest_first_paginated_and_only_holds_orders_to_pick(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given five orders; one gets packed, one cancelled, one split-shipped with a rest
    views = [place_order(cast.owner, [("MUG-001", 1), ("TEE-BLK-M", 1)]) for _ in range(5)]
    pack(run, services, cast.warehouse, views[1].order)
    run(services.orders.cancel_order(cast.owner.viewer, views[2].order.code, "10.0.0.1"))
    pack(run, services, cast.warehouse, views[3].order, [("MUG-001", 1)])
    ship(run, services, cast.warehouse, views[3].order)
    # when the warehouse pages through the queue two at a time
    seen: list[str] = []
    after = None
    while True:
        page = gql.data(QUEUE, {"first": 2, "after": after}, token=cast.warehouse.token)
        connection = page["fulfillmentQueue"]
        seen += [edge["node"]["code"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
    # then it lists, oldest first, the untouched orders and the one with a rest to pick
    expected = [views[i].order.code for i in (0, 3, 4)]
    assert seen == [codes.display(code) for code in expected]
    rest = gql.data(QUEUE, {"first": 5}, token=cast.warehouse.token)["fulfillmentQueue"]
    split = rest["edges"][1]["node"]
    assert split["status"] == "PARTIALLY_SHIPPED"
    assert {line["sku"]: line["quantity"] for line in split["lines"]} == {
        "MUG-001": 0,
        "TEE-BLK-M": 1,
    }


def test_queue_cursor_cannot_be_forged_and_page_size_is_capped(
    gql: GraphQLClient, cast: Cast
) -> None:
    # when the cursor is made up, or the page is too large
    forged = gql(QUEUE, {"first": 2, "after": "b3JkZXI6MQ"}, token=cast.warehouse.token)
    huge = gql(QUEUE, {"first": 500}, token=cast.warehouse.token)
    # then both are refused as bad input
    assert error_codes(forged) == ["BAD_USER_INPUT"]
    assert error_codes(huge) == ["BAD_USER_INPUT"]


# -- packing ------------------------------------------------------------------------------


def test_pack_with_an_exact_scan_packs_the_order(
    gql: GraphQLClient, services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order of two mugs and a lamp
    view = place_order(cast.owner, [("MUG-001", 2), ("LAMP-DESK", 1)])
    # when every item is scanned, in any order and case
    payload = gql.data(
        PACK,
        {"code": view.order.code, "scans": ["mug-001", "LAMP-DESK", "MUG-001"]},
        token=cast.warehouse.token,
    )["packOrder"]
    # then the parcel is recorded and the order is PACKED
    assert payload["userErrors"] == []
    assert payload["order"]["status"] == "PACKED"
    assert payload["packed"] == [
        {"sku": "LAMP-DESK", "quantity": 1},
        {"sku": "MUG-001", "quantity": 2},
    ]
    assert sql_count(services, "SELECT sum(quantity) FROM pack_lines") == 3


def test_a_wrong_scan_lists_the_difference_and_changes_nothing(
    gql: GraphQLClient, services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order of two mugs and a lamp
    view = place_order(cast.owner, [("MUG-001", 2), ("LAMP-DESK", 1)])
    # when the scan has one mug too few and a T-shirt that is not in the order
    payload = gql.data(
        PACK,
        {"code": view.order.code, "scans": ["MUG-001", "LAMP-DESK", "TEE-BLK-M"]},
        token=cast.warehouse.token,
    )["packOrder"]
    # then the answer lists what is missing and what does not belong
    assert payload["order"] is None
    assert payload["missing"] == [{"sku": "MUG-001", "quantity": 1}]
    assert payload["unexpected"] == [{"sku": "TEE-BLK-M", "quantity": 1}]
    assert payload["userErrors"][0]["field"] == "scannedSkus"
    assert payload["userErrors"][0]["code"] == "BAD_USER_INPUT"
    # then nothing was recorded and the order did not move
    assert count(services, "packs") == 0
    assert order_status(services, view.order) == "PLACED"


def test_an_extra_unit_of_an_ordered_item_is_unexpected(
    gql: GraphQLClient, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order of two mugs
    view = place_order(cast.owner, [("MUG-001", 2)])
    # when three mugs are scanned
    payload = gql.data(
        PACK, {"code": view.order.code, "scans": ["MUG-001"] * 3}, token=cast.warehouse.token
    )["packOrder"]
    # then the third one is unexpected and nothing is missing
    assert payload["missing"] == []
    assert payload["unexpected"] == [{"sku": "MUG-001", "quantity": 1}]
    assert payload["order"] is None


def test_split_shipment_moves_through_processing_and_partially_shipped(
    gql: GraphQLClient, services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order of two mugs and a lamp
    view = place_order(cast.owner, [("MUG-001", 2), ("LAMP-DESK", 1)])
    code = view.order.code
    token = cast.warehouse.token

    # when only the mugs are packed (a scan of exactly the mugs)
    first = gql.data(
        PACK,
        {"code": code, "scans": ["MUG-001", "MUG-001"], "lines": [{"sku": "MUG-001"}]},
        token=token,
    )["packOrder"]
    # then the order is PROCESSING
    assert first["order"]["status"] == "PROCESSING"

    # when the mugs are shipped
    shipped = gql.data(SHIP, {"code": code, "carrier": "DHL", "tracking": "PART-1"}, token=token)
    # then that shipment holds the mugs and the order is PARTIALLY_SHIPPED
    assert shipped["shipOrder"]["shipment"]["lines"] == [{"sku": "MUG-001", "quantity": 2}]
    assert shipped["shipOrder"]["order"]["status"] == "PARTIALLY_SHIPPED"

    # when the rest is packed (no lines given: everything still to pick) and shipped
    rest = gql.data(PACK, {"code": code, "scans": ["LAMP-DESK"]}, token=token)["packOrder"]
    assert rest["order"]["status"] == "PARTIALLY_SHIPPED"
    last = gql.data(SHIP, {"code": code, "carrier": "UPS", "tracking": "PART-2"}, token=token)
    # then the order is SHIPPED, in two shipments, with one shipping email for each
    assert last["shipOrder"]["order"]["status"] == "SHIPPED"
    assert last["shipOrder"]["shipment"]["lines"] == [{"sku": "LAMP-DESK", "quantity": 1}]
    assert count(services, "shipments") == 2
    assert sql_count(services, "SELECT count(*) FROM outbox_emails WHERE kind='order_shipped'") == 2


def test_packing_more_than_is_left_is_refused(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given an order of two mugs, one of them packed already
    view = place_order(cast.owner, [("MUG-001", 2)])
    pack(run, services, cast.warehouse, view.order, [("MUG-001", 1)])
    # when two more mugs are declared for packing
    payload = gql.data(
        PACK,
        {
            "code": view.order.code,
            "scans": ["MUG-001", "MUG-001"],
            "lines": [{"sku": "MUG-001", "quantity": 2}],
        },
        token=cast.warehouse.token,
    )["packOrder"]
    # then it is refused on the line, and only the first mug stays packed
    assert payload["userErrors"][0]["field"] == "lines[0].quantity"
    assert sql_count(services, "SELECT sum(quantity) FROM pack_lines") == 1


# -- illegal transitions ------------------------------------------------------------------


def test_shipping_before_packing_is_refused_and_changes_nothing(
    gql: GraphQLClient, services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given an order nobody packed
    view = place_order(cast.owner)
    # when the warehouse tries to ship it
    payload = gql.data(
        SHIP,
        {"code": view.order.code, "carrier": "DHL", "tracking": "EARLY-1"},
        token=cast.warehouse.token,
    )["shipOrder"]
    # then it is a CONFLICT that says to pack first, and no shipment or email exists
    error = payload["userErrors"][0]
    assert error["code"] == "CONFLICT" and "pack" in error["message"].lower()
    assert payload["shipment"] is None
    assert count(services, "shipments") == 0
    assert sql_count(services, "SELECT count(*) FROM outbox_emails WHERE kind='order_shipped'") == 0
    assert order_status(services, view.order) == "PLACED"


def test_a_cancelled_order_cannot_be_packed_or_shipped(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given an order that was packed, then cancelled by its owner (allowed before shipment)
    view = place_order(cast.owner, [("MUG-001", 1)])
    pack(run, services, cast.warehouse, view.order)
    run(services.orders.cancel_order(cast.owner.viewer, view.order.code, "10.0.0.1"))
    code = view.order.code
    # when the warehouse tries to pack or ship it
    packed = gql.data(PACK, {"code": code, "scans": ["MUG-001"]}, token=cast.warehouse.token)
    shipped = gql.data(
        SHIP, {"code": code, "carrier": "DHL", "tracking": "GONE-1"}, token=cast.warehouse.token
    )
    # then both are CONFLICTs naming the status, and the order stays CANCELLED
    for payload in (packed["packOrder"], shipped["shipOrder"]):
        assert payload["userErrors"][0]["code"] == "CONFLICT"
        assert "CANCELLED" in payload["userErrors"][0]["message"]
    assert count(services, "shipments") == 0
    assert order_status(services, view.order) == "CANCELLED"


def test_a_shipped_order_cannot_be_packed_shipped_again_or_cancelled(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given an order that shipped completely
    view = place_order(cast.owner, [("MUG-001", 1)])
    pack(run, services, cast.warehouse, view.order)
    ship(run, services, cast.warehouse, view.order, tracking="ONCE-1")
    code = view.order.code
    # when it is packed again, shipped again, or cancelled by its owner
    packed = gql.data(PACK, {"code": code, "scans": ["MUG-001"]}, token=cast.warehouse.token)
    shipped = gql.data(
        SHIP, {"code": code, "carrier": "DHL", "tracking": "TWICE-1"}, token=cast.warehouse.token
    )
    cancel = gql.data(
        "mutation C($code: String!) { cancelOrder(code: $code) { userErrors { code } } }",
        {"code": code},
        token=cast.owner.token,
    )
    # then every one is refused and nothing changed
    assert packed["packOrder"]["userErrors"][0]["code"] == "CONFLICT"
    assert shipped["shipOrder"]["userErrors"][0]["code"] == "CONFLICT"
    assert cancel["cancelOrder"]["userErrors"][0]["code"] == "CONFLICT"
    assert count(services, "shipments") == 1
    assert order_status(services, view.order) == "SHIPPED"


def test_a_tracking_number_is_used_once_per_carrier(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given one shipped order and another packed one
    first = place_order(cast.owner)
    second = place_order(cast.owner)
    for view in (first, second):
        pack(run, services, cast.warehouse, view.order)
    ship(run, services, cast.warehouse, first.order, tracking="SAME0001")
    # when the second is shipped with the same carrier and tracking number (spaced, lower)
    payload = gql.data(
        SHIP,
        {"code": second.order.code, "carrier": "dhl", "tracking": "same 0001"},
        token=cast.warehouse.token,
    )["shipOrder"]
    # then it is refused on the tracking number; another carrier may reuse the number
    assert payload["userErrors"][0]["field"] == "trackingNumber"
    assert order_status(services, second.order) == "PACKED"
    other = gql.data(
        SHIP,
        {"code": second.order.code, "carrier": "UPS", "tracking": "SAME0001"},
        token=cast.warehouse.token,
    )["shipOrder"]
    assert other["userErrors"] == []
    assert other["order"]["status"] == "SHIPPED"


# -- the shipping email -------------------------------------------------------------------


def test_shipping_email_names_carrier_tracking_number_and_estimated_delivery(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given a packed order of two mugs and a lamp
    view = place_order(cast.owner, [("MUG-001", 2), ("LAMP-DESK", 1)])
    pack(run, services, cast.warehouse, view.order)
    # when the warehouse ships it
    shipment = gql.data(
        SHIP,
        {"code": view.order.code, "carrier": "DHL", "tracking": "00340434161234567890"},
        token=cast.warehouse.token,
    )["shipOrder"]["shipment"]
    # then one email to the owner carries the carrier, tracking number, delivery date, items
    with db_session(services) as session:
        rows = session.execute(
            text(
                "SELECT recipient, subject, body_text, dedupe_key FROM outbox_emails "
                "WHERE kind='order_shipped'"
            )
        ).all()
    assert len(rows) == 1
    recipient, subject, body, dedupe_key = rows[0]
    assert recipient == cast.owner.email
    assert subject == f"Your order {codes.display(view.order.code)} has shipped"
    assert "Carrier:          DHL" in body
    assert "Tracking number:  00340434161234567890" in body
    assert f"({shipment['estimatedDelivery']})" in body
    assert "2 x Enamel camping mug (MUG-001)" in body
    assert "1 x LED desk lamp (LAMP-DESK)" in body
    assert dedupe_key.startswith("order-shipped.")


def test_a_partial_shipment_says_so_in_the_email(
    services: Services, cast: Cast, place_order: Callable[..., OrderView], run: Run[Any]
) -> None:
    # given an order of which only the mug is packed
    view = place_order(cast.owner, [("MUG-001", 1), ("LAMP-DESK", 1)])
    pack(run, services, cast.warehouse, view.order, [("MUG-001", 1)])
    # when the mug ships
    ship(run, services, cast.warehouse, view.order)
    # then the email says part of the order shipped, the rest follows
    with db_session(services) as session:
        subject, body = session.execute(
            text("SELECT subject, body_text FROM outbox_emails WHERE kind='order_shipped'")
        ).one()
    assert subject.startswith("Part of your order")
    assert "other items follow" in body
    assert "LAMP-DESK" not in body


# -- tracking events by hand --------------------------------------------------------------


def test_add_tracking_event_is_idempotent_per_event_id(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given a shipped order
    view = place_order(cast.owner)
    pack(run, services, cast.warehouse, view.order)
    ship(run, services, cast.warehouse, view.order, tracking="IDEM-0001")
    variables = {
        "code": view.order.code,
        "carrier": "DHL",
        "tracking": "IDEM-0001",
        "status": "OUT_FOR_DELIVERY",
        "eventId": "manual-1",
        "location": "Berlin depot",
    }
    # when the same event is added twice
    first = gql.data(ADD_EVENT, variables, token=cast.warehouse.token)["addTrackingEvent"]
    again = gql.data(ADD_EVENT, variables, token=cast.warehouse.token)["addTrackingEvent"]
    # then it is recorded once
    assert (first["recorded"], again["recorded"]) == (True, False)
    assert again["shipment"]["events"] == [
        {"status": "OUT_FOR_DELIVERY", "location": "Berlin depot"}
    ]
    assert count(services, "tracking_events") == 1


def test_add_tracking_event_needs_a_shipment_of_this_order(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given two orders, only the first shipped
    first = place_order(cast.owner)
    second = place_order(cast.owner)
    pack(run, services, cast.warehouse, first.order)
    ship(run, services, cast.warehouse, first.order, tracking="MINE-0001")
    # when an event for the first order's parcel is added through the second order's code
    payload = gql.data(
        ADD_EVENT,
        {
            "code": second.order.code,
            "carrier": "DHL",
            "tracking": "MINE-0001",
            "status": "DELIVERED",
        },
        token=cast.warehouse.token,
    )["addTrackingEvent"]
    # then it is refused on the tracking number and nothing is recorded
    assert payload["userErrors"][0]["field"] == "trackingNumber"
    assert count(services, "tracking_events") == 0


def test_an_event_in_the_future_is_refused(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> None:
    # given a shipped order
    view = place_order(cast.owner)
    pack(run, services, cast.warehouse, view.order)
    ship(run, services, cast.warehouse, view.order, tracking="FUTURE-01")
    # when an event dated tomorrow is added
    payload = gql.data(
        ADD_EVENT,
        {
            "code": view.order.code,
            "carrier": "DHL",
            "tracking": "FUTURE-01",
            "status": "DELIVERED",
            "occurredAt": "2999-01-01T00:00:00+00:00",
        },
        token=cast.warehouse.token,
    )["addTrackingEvent"]
    # then it is refused on occurredAt and the order did not move
    assert payload["userErrors"][0]["field"] == "occurredAt"
    assert order_status(services, view.order) == "SHIPPED"


def test_scans_helper_lists_each_unit(
    services: Services, cast: Cast, place_order: Callable[..., OrderView], run: Run[Any]
) -> None:
    # given an order of two mugs (guards the helper the other tests lean on)
    view = place_order(cast.owner, [("MUG-001", 2)])
    # then the scan helper lists one scan per unit, and packing with it succeeds
    assert scans(view.order, services) == ["MUG-001", "MUG-001"]
    pack(run, services, cast.warehouse, view.order)
    assert order_status(services, view.order) == "PACKED"
