"""Customer self-service returns: returnEligibility, requestReturn and returnRequest.

Who may use each door (anonymous, owner, other customer, SUPPORT, WAREHOUSE, ADMIN), what
can be returned and why not, the RMA code, the instructions email, live updates, the
limiter, and concurrent requests that must never return more than was delivered."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from app.container import Services, build_services
from app.errors import BadUserInput
from app.orders.service import OrderView
from app.security import codes
from app.settings import Settings
from tests.conftest import (
    FAST_PASSWORDS,
    Account,
    GraphQLClient,
    Run,
    db_session,
    error_codes,
    sql_count,
)
from tests.support.actors import Cast, make_cast
from tests.support.carriers import pack, ship, strip
from tests.support.returns import ELIGIBILITY, REQUEST, RETURN, deliver, email_body, emails, request
from tests.support.subscriptions import connect, subscribe, wait_for_subscriber

STAFF = {"SUPPORT", "WAREHOUSE", "ADMIN"}


@pytest.fixture
def cast(owner: Account, other_customer: Account, make_account: Callable[..., Account]) -> Cast:
    return make_cast(owner, other_customer, make_account)


@pytest.fixture
def delivered(
    run: Run[Any], services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> OrderView:
    """The owner's order of two mugs and a T-shirt, delivered today."""
    view = place_order(cast.owner, [("MUG-001", 2), ("TEE-BLK-M", 1)])
    deliver(run, services, cast.warehouse, view)
    return view


def returns_count(services: Services) -> int:
    return sql_count(services, "SELECT count(*) FROM return_requests")


# -- who may do what ----------------------------------------------------------------------


def test_return_eligibility_role_matrix(
    gql: GraphQLClient, cast: Cast, delivered: OrderView
) -> None:
    # given a delivered order and a valid code that belongs to no order
    unknown = codes.generate()
    for who, token in cast.tokens().items():
        # when each kind of caller asks what can be returned, for both codes
        real = gql(ELIGIBILITY, {"code": delivered.order.code}, token=token)
        fake = gql(ELIGIBILITY, {"code": unknown}, token=token)
        if who == "owner":
            # then the owner sees every line with what can be returned
            lines = real["data"]["returnEligibility"]["lines"]
            assert [(x["sku"], x["returnableQuantity"]) for x in lines] == [
                ("MUG-001", 2),
                ("TEE-BLK-M", 1),
            ]
            assert error_codes(fake) == ["ORDER_NOT_FOUND"]
        else:
            # then everyone else (staff included: this is a customer door) gets one answer
            # for the real and the unknown code
            expected = "UNAUTHENTICATED" if who == "anonymous" else "ORDER_NOT_FOUND"
            assert error_codes(real) == [expected], who
            assert strip(real) == strip(fake), who


def test_request_return_role_matrix(
    gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given a delivered order and a valid code that belongs to no order
    unknown = codes.generate()
    variables = {"lines": [{"sku": "MUG-001", "quantity": 1}]}
    for who, token in cast.tokens().items():
        # when each kind of caller asks to return a mug of it (and of the unknown code)
        real = gql(REQUEST, {**variables, "code": delivered.order.code}, token=token)
        fake = gql(REQUEST, {**variables, "code": unknown}, token=token)
        if who == "owner":
            # then only the owner gets a return
            payload = real["data"]["requestReturn"]
            assert payload["userErrors"] == []
            assert payload["returnRequest"]["status"] == "REQUESTED"
            assert error_codes(fake) == ["ORDER_NOT_FOUND"]
        elif who in ("SUPPORT", "ADMIN"):
            # support acts for the customer only with a ticket (supportReason): without one,
            # a userError on it, the same for the real and the unknown code
            errors = real["data"]["requestReturn"]["userErrors"]
            assert [e["field"] for e in errors] == ["supportReason"], who
            assert strip(real) == strip(fake), who
        else:
            expected = "UNAUTHENTICATED" if who == "anonymous" else "ORDER_NOT_FOUND"
            assert error_codes(real) == [expected], who
            assert strip(real) == strip(fake), who
    # then exactly one return exists: nobody else created one
    assert returns_count(services) == 1


def test_return_request_role_matrix(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given the owner's return and a valid RMA that belongs to no return
    ret = request(run, services, cast.owner, delivered)
    rma = codes.display(ret.request.rma_code)
    unknown = codes.generate()
    for who, token in cast.tokens().items():
        # when each kind of caller looks both up
        real = gql(RETURN, {"rma": rma}, token=token)
        fake = gql(RETURN, {"rma": unknown}, token=token)
        if who == "owner" or who in STAFF:
            # then the owner and staff see the return; an unknown RMA is ORDER_NOT_FOUND
            seen = real["data"]["returnRequest"]
            assert seen["rma"] == rma and seen["status"] == "REQUESTED", who
            assert seen["orderCode"] == codes.display(delivered.order.code)
            assert seen["lines"] == [
                {
                    "sku": "MUG-001",
                    "quantity": 1,
                    "receivedQuantity": None,
                    "unitPrice": {"amount": 1299},
                }
            ]
            assert error_codes(fake) == ["ORDER_NOT_FOUND"], who
        else:
            # then anybody else cannot tell the real RMA from an unknown one
            expected = "UNAUTHENTICATED" if who == "anonymous" else "ORDER_NOT_FOUND"
            assert error_codes(real) == [expected], who
            assert strip(real) == strip(fake), who


def test_another_customers_rma_answers_exactly_like_the_order_doors(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given the owner's return
    ret = request(run, services, cast.owner, delivered)
    # when another customer looks up the RMA, and the owner's order code
    by_rma = gql(RETURN, {"rma": ret.request.rma_code}, token=cast.other_customer.token)
    by_order = gql(
        "query O($code: String!) { order(code: $code) { code } }",
        {"code": delivered.order.code},
        token=cast.other_customer.token,
    )
    # then both doors say the same thing, in the same words
    assert error_codes(by_rma) == error_codes(by_order) == ["ORDER_NOT_FOUND"]
    assert by_rma["errors"][0]["message"] == by_order["errors"][0]["message"]
    # and both count as failed lookups toward the lockout
    key = f"user:{cast.other_customer.viewer.public_id}"
    assert run(services.limiter.remaining(services.limiter.failures_per_user, key)) == 10 - 2


def test_ownership_is_settled_before_the_input_is_judged(
    gql: GraphQLClient, cast: Cast, delivered: OrderView
) -> None:
    # given another customer who sends input that would be refused (3 T-shirts of 1)
    bad = {"lines": [{"sku": "TEE-BLK-M", "quantity": 3}]}
    # when they send it for the owner's order and for an unknown code
    theirs = gql(REQUEST, {**bad, "code": delivered.order.code}, token=cast.other_customer.token)
    unknown = gql(REQUEST, {**bad, "code": codes.generate()}, token=cast.other_customer.token)
    # then they learn nothing about the order: no "only 1 can be returned", just not found
    assert error_codes(theirs) == ["ORDER_NOT_FOUND"]
    assert strip(theirs) == strip(unknown)


# -- eligibility -------------------------------------------------------------------------


def test_eligibility_says_why_nothing_can_be_returned(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given mugs delivered and fully returned, a T-shirt on its way, a lamp not shipped
    view = place_order(cast.owner, [("MUG-001", 2), ("TEE-BLK-M", 1), ("LAMP-DESK", 1)])
    deliver(run, services, cast.warehouse, view, lines=[("MUG-001", 2)])
    pack(run, services, cast.warehouse, view.order, [("TEE-BLK-M", 1)])
    ship(run, services, cast.warehouse, view.order, lines=[("TEE-BLK-M", 1)])
    request(run, services, cast.owner, view, [("MUG-001", 2)])
    # when the owner asks what can be returned
    result = gql.data(ELIGIBILITY, {"code": view.order.code}, token=cast.owner.token)
    lines = {x["sku"]: x for x in result["returnEligibility"]["lines"]}
    # then nothing can, and each line says why
    assert result["returnEligibility"]["canReturn"] is False
    assert lines["MUG-001"]["reason"] == "ALREADY_RETURNED"
    assert lines["MUG-001"]["returnedQuantity"] == 2
    assert lines["MUG-001"]["deliveredQuantity"] == 2
    assert lines["TEE-BLK-M"]["reason"] == "NOT_DELIVERED"
    assert lines["TEE-BLK-M"]["deliveredQuantity"] == 0
    assert lines["LAMP-DESK"]["reason"] == "NOT_DELIVERED"
    assert all(x["returnableQuantity"] == 0 for x in lines.values())
    assert all(x["returnableUntil"] is None for x in lines.values())


def test_eligibility_shows_the_window_of_what_can_be_returned(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given a delivered order (today) with one mug already being returned
    request(run, services, cast.owner, delivered, [("MUG-001", 1)])
    # when the owner asks what can be returned
    result = gql.data(ELIGIBILITY, {"code": delivered.order.code}, token=cast.owner.token)
    mug = result["returnEligibility"]["lines"][0]
    # then one mug is left, returnable for 30 days from delivery
    assert result["returnEligibility"]["windowDays"] == 30
    assert (mug["returnableQuantity"], mug["returnedQuantity"], mug["reason"]) == (1, 1, None)
    until = datetime.fromisoformat(mug["returnableUntil"])
    assert timedelta(days=29) < until - datetime.now(UTC) <= timedelta(days=30)


def test_the_return_window_closes_and_is_configurable(
    run: Run[Any],
    gql: GraphQLClient,
    settings: Settings,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given mugs delivered 31 days ago
    view = place_order(cast.owner, [("MUG-001", 2)])
    deliver(
        run, services, cast.warehouse, view, delivered_at=datetime.now(UTC) - timedelta(days=31)
    )
    # when the owner asks to return one with the default 30-day window
    refused = gql.data(
        REQUEST,
        {"code": view.order.code, "lines": [{"sku": "MUG-001", "quantity": 1}]},
        token=cast.owner.token,
    )["requestReturn"]
    # then the owner is told the window closed, and nothing is created
    assert refused["returnRequest"] is None
    [error] = refused["userErrors"]
    assert error["code"] == "BAD_USER_INPUT" and error["field"] == "lines[0].quantity"
    assert "return window" in error["message"] and "30 days" in error["message"]
    eligibility = gql.data(ELIGIBILITY, {"code": view.order.code}, token=cast.owner.token)
    assert eligibility["returnEligibility"]["lines"][0]["reason"] == "WINDOW_CLOSED"
    assert returns_count(services) == 0
    # when the shop allows 60 days (RETURN_WINDOW_DAYS)
    longer = build_services(replace(settings, return_window_days=60), passwords=FAST_PASSWORDS)
    try:
        ret = request(run, longer, cast.owner, view, [("MUG-001", 1)])
    finally:
        run(longer.aclose())
    # then the same request goes through
    assert ret.request.status == "REQUESTED"
    assert returns_count(services) == 1


def test_a_late_parcel_does_not_reopen_the_window_of_an_early_one(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given two mugs: one delivered 40 days ago, the other yesterday (split shipment)
    view = place_order(cast.owner, [("MUG-001", 2)])
    now = datetime.now(UTC)
    deliver(
        run,
        services,
        cast.warehouse,
        view,
        lines=[("MUG-001", 1)],
        delivered_at=now - timedelta(days=40),
    )
    deliver(
        run,
        services,
        cast.warehouse,
        view,
        lines=[("MUG-001", 1)],
        delivered_at=now - timedelta(days=1),
    )
    # when the owner returns the recent one
    request(run, services, cast.owner, view, [("MUG-001", 1)])
    result = gql.data(ELIGIBILITY, {"code": view.order.code}, token=cast.owner.token)
    mug = result["returnEligibility"]["lines"][0]
    # then the old one cannot ride on the recent parcel's window
    assert (mug["deliveredQuantity"], mug["returnableQuantity"]) == (2, 0)
    assert mug["reason"] == "WINDOW_CLOSED"
    with pytest.raises(BadUserInput):
        request(run, services, cast.owner, view, [("MUG-001", 1)])


# -- the request ---------------------------------------------------------------------------


def test_requesting_a_return_creates_an_rma_and_emails_the_instructions(
    gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given a delivered order
    # when the owner asks to return a broken mug, with a comment
    payload = gql.data(
        REQUEST,
        {
            "code": codes.display(delivered.order.code).lower(),  # as typed: case is ignored
            "lines": [{"sku": "mug-001", "quantity": 1}],
            "reason": "DEFECTIVE",
            "comment": "The handle came off.",
        },
        token=cast.owner.token,
    )["requestReturn"]
    # then a REQUESTED return with its own RMA code exists
    assert payload["userErrors"] == []
    ret = payload["returnRequest"]
    rma = ret["rma"]
    assert len(rma) == 19 and rma.count("-") == 3
    assert codes.normalise(rma) == rma.replace("-", "")  # the same scheme as order codes
    assert rma != codes.display(delivered.order.code)
    assert ret["status"] == "REQUESTED" and ret["reason"] == "DEFECTIVE"
    assert ret["comment"] == "The handle came off."
    assert ret["lines"] == [
        {
            "sku": "MUG-001",
            "quantity": 1,
            "receivedQuantity": None,
            "unitPrice": {"amount": 1299, "currency": "EUR"},
        }
    ]
    assert ret["refund"] is None and ret["approvedAt"] is None
    # then the RMA is stored canonical and unique
    with db_session(services) as session:
        stored = session.execute(text("SELECT rma_code FROM return_requests")).scalar_one()
    assert stored == rma.replace("-", "")
    # then the instructions are queued for the owner, with the RMA and where to send it
    assert emails(services, "return_requested") == 1
    with db_session(services) as session:
        recipient = session.execute(
            text("SELECT recipient FROM outbox_emails WHERE kind = 'return_requested'")
        ).scalar_one()
    assert recipient == cast.owner.email
    body = email_body(services, "return_requested")
    assert rma in body and codes.display(delivered.order.code) in body
    assert "1 x Enamel camping mug (MUG-001)" in body
    assert "write the return number" in body and "10115 Berlin" in body


@pytest.mark.parametrize(
    ("lines", "field", "message"),
    [
        ([{"sku": "MUG-001", "quantity": 3}], "lines[0].quantity", "Only 2 of MUG-001"),
        ([{"sku": "LAMP-DESK", "quantity": 1}], "lines[0].sku", "no line with this SKU"),
        ([{"sku": "MUG-001", "quantity": 0}], "lines[0].quantity", "between 1 and"),
        ([], "lines", "at least one"),
    ],
)
def test_a_request_beyond_what_can_be_returned_changes_nothing(
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    delivered: OrderView,
    lines: list[dict[str, Any]],
    field: str,
    message: str,
) -> None:
    # given a delivered order of two mugs and a T-shirt
    # when the owner asks for something that cannot be returned
    payload = gql.data(
        REQUEST, {"code": delivered.order.code, "lines": lines}, token=cast.owner.token
    )["requestReturn"]
    # then the input error names the field, and no return or email is created
    assert payload["returnRequest"] is None
    [error] = payload["userErrors"]
    assert error["field"] == field and message in error["message"]
    assert returns_count(services) == 0
    assert emails(services, "return_requested") == 0


def test_what_is_being_returned_cannot_be_asked_for_again(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given one mug of two already being returned
    request(run, services, cast.owner, delivered, [("MUG-001", 1)])
    # when the owner asks for two more
    payload = gql.data(
        REQUEST,
        {"code": delivered.order.code, "lines": [{"sku": "MUG-001", "quantity": 2}]},
        token=cast.owner.token,
    )["requestReturn"]
    # then only one is left to ask for
    assert payload["userErrors"][0]["message"] == "Only 1 of MUG-001 can be returned."
    assert returns_count(services) == 1


def test_returns_are_listed_on_the_order(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given two returns of one order
    first = request(run, services, cast.owner, delivered, [("MUG-001", 1)])
    second = request(run, services, cast.owner, delivered, [("TEE-BLK-M", 1)])
    # when the owner reads the order
    order = gql.data(
        "query O($code: String!) { order(code: $code) { returns { rma status lines { sku } } } }",
        {"code": delivered.order.code},
        token=cast.owner.token,
    )["order"]
    # then both are there, oldest first
    assert [r["rma"] for r in order["returns"]] == [
        codes.display(first.request.rma_code),
        codes.display(second.request.rma_code),
    ]
    assert [r["lines"][0]["sku"] for r in order["returns"]] == ["MUG-001", "TEE-BLK-M"]


# -- the gate ------------------------------------------------------------------------------


def test_every_rma_lookup_is_charged_and_a_typo_costs_no_database(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given the owner's return
    ret = request(run, services, cast.owner, delivered)
    key = f"user:{cast.owner.viewer.public_id}"
    before = run(services.limiter.remaining(services.limiter.lookups_per_user, key))
    # when the owner reads it three times in one query (aliases)
    query = "query Q($rma: String!) { a: returnRequest(rma: $rma) { status } " + (
        "b: returnRequest(rma: $rma) { status } c: returnRequest(rma: $rma) { status } }"
    )
    body = gql(query, {"rma": ret.request.rma_code}, token=cast.owner.token)
    # then each resolution is charged once
    assert [body["data"][k]["status"] for k in "abc"] == ["REQUESTED"] * 3
    after = run(services.limiter.remaining(services.limiter.lookups_per_user, key))
    assert before - after == 3
    # when an RMA has a typo (a wrong check symbol)
    typo = ret.request.rma_code[:-1] + ("0" if ret.request.rma_code[-1] != "0" else "1")
    # then it is INVALID_ORDER_CODE, like any code
    assert error_codes(gql(RETURN, {"rma": typo}, token=cast.owner.token)) == ["INVALID_ORDER_CODE"]


# -- live updates --------------------------------------------------------------------------


def test_subscribers_are_told_about_the_return(
    run: Run[Any], http: TestClient, services: Services, cast: Cast, delivered: OrderView
) -> None:
    # given the owner follows the order live
    with connect(http, cast.owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, delivered.order.code)
        wait_for_subscriber(services, delivered.order.id)
        # when the owner asks for a return
        request(run, services, cast.owner, delivered)
        # then the stream says a return was updated
        message = stream.next()
    assert message["type"] == "next"
    update = message["payload"]["data"]["orderUpdates"]
    assert update["type"] == "RETURN_UPDATED"
    assert update["order"]["code"] == codes.display(delivered.order.code)


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_requests_never_return_more_than_was_delivered(
    run: Run[Any], services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given three mugs delivered (runs on SQLite and on PostgreSQL)
    view = place_order(cast.owner, [("MUG-001", 3)])
    deliver(run, services, cast.warehouse, view)
    attempts = 8
    start = threading.Barrier(attempts)
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt() -> None:
        start.wait()
        try:
            request(run, services, cast.owner, view, [("MUG-001", 1)])
            outcome = "created"
        except BadUserInput:
            outcome = "refused"
        except Exception as exc:  # anything else is a failure of the test
            outcome = f"error: {exc!r}"
        with lock:
            outcomes.append(outcome)

    # when eight requests for one mug each run at the same time
    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then exactly three get a return and five are refused
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 5, outcomes
    # then the database holds three mugs in returns, never more
    units = sql_count(services, "SELECT coalesce(sum(quantity), 0) FROM return_lines")
    assert units == 3
    assert returns_count(services) == 3
