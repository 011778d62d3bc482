"""The staff side of returns: approveReturn, rejectReturn (SUPPORT, ADMIN), receiveReturn
(WAREHOUSE, ADMIN), refundReturn (ADMIN, or automatic on receipt).

Who may use each door, legal and illegal transitions, the refund amount and its cap, a
refund made once however often it is asked for, a failing provider leaving the return
retryable with nothing half-written, emails at each step, the order status, and the
audit log of the staff steps."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from app.container import Services, build_services
from app.errors import OrderNotFound
from app.orders.service import OrderView
from app.payments.provider import provider_ledger_url
from app.returns.service import ReturnView
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
from tests.support.carriers import event, order_status, pack, ship, strip
from tests.support.returns import (
    APPROVE,
    ELIGIBILITY,
    IP,
    ORDER_RETURNS,
    RECEIVE,
    REFUND,
    REJECT,
    RETURN,
    FlakyRefunds,
    approve,
    deliver,
    email_body,
    emails,
    receive,
    refunds,
    request,
)
from tests.support.subscriptions import connect, subscribe, wait_for_subscriber

AUDIT = """
query Audit($filter: AuditFilterInput) {
  auditLog(filter: $filter, first: 50) {
    edges { node { actorEmail actorRole action code outcome reason } }
  }
}
"""


@pytest.fixture
def services(settings: Settings) -> Services:
    """Services as in production, with a payment provider whose refunds can fail (closed
    by the app's lifespan when `http` ends)."""
    provider = FlakyRefunds(provider_ledger_url(settings.database_url))
    return build_services(settings, passwords=FAST_PASSWORDS, payments=provider)


def provider(services: Services) -> FlakyRefunds:
    assert isinstance(services.payments, FlakyRefunds)
    return services.payments


@pytest.fixture
def cast(owner: Account, other_customer: Account, make_account: Callable[..., Account]) -> Cast:
    return make_cast(owner, other_customer, make_account)


@pytest.fixture
def mug_and_tee(
    run: Run[Any], services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> OrderView:
    """A delivered order of one mug (12.99) and one T-shirt (24.99), shipping 4.95 paid:
    37.98 is under the free-shipping threshold, so the total is 42.93."""
    view = place_order(cast.owner, [("MUG-001", 1), ("TEE-BLK-M", 1)])
    assert (view.order.shipping_minor, view.order.total_minor) == (495, 4293)
    deliver(run, services, cast.warehouse, view)
    return view


def status_of(services: Services, ret: ReturnView) -> str:
    with db_session(services) as session:
        return str(
            session.execute(
                text("SELECT status FROM return_requests WHERE id = :id"), {"id": ret.request.id}
            ).scalar_one()
        )


def refunded_of(services: Services, view: OrderView) -> int:
    return sql_count(services, f"SELECT refunded_minor FROM orders WHERE id = {view.order.id}")


# -- who may do what ----------------------------------------------------------------------


def _to(run: Run[Any], services: Services, cast: Cast, ret: ReturnView, status: str) -> None:
    """Bring a fresh (REQUESTED) return to `status`."""
    if status in ("APPROVED", "RECEIVED", "REFUNDED"):
        approve(run, services, cast, ret)
    if status in ("RECEIVED", "REFUNDED"):
        receive(run, services, cast, ret)
    if status == "REFUNDED":
        run(services.returns.refund(cast.admin.viewer, ret.request.rma_code, IP))
    if status == "REJECTED":
        run(services.returns.reject(cast.support.viewer, ret.request.rma_code, IP, "Not our item"))


OPERATIONS: dict[str, tuple[str, set[str], str, dict[str, Any], str]] = {
    # operation: (document, roles allowed, status it acts on, extra variables, status after)
    "approveReturn": (APPROVE, {"SUPPORT", "ADMIN"}, "REQUESTED", {}, "APPROVED"),
    "rejectReturn": (
        REJECT,
        {"SUPPORT", "ADMIN"},
        "REQUESTED",
        {"reason": "Worn, cannot be resold"},
        "REJECTED",
    ),
    "receiveReturn": (
        RECEIVE,
        {"WAREHOUSE", "ADMIN"},
        "APPROVED",
        {"lines": [{"sku": "MUG-001", "quantity": 1}]},
        "RECEIVED",
    ),
    "refundReturn": (REFUND, {"ADMIN"}, "RECEIVED", {}, "REFUNDED"),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_staff_return_operations_role_matrix(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
    operation: str,
) -> None:
    document, allowed, before, extra, after = OPERATIONS[operation]
    # given six delivered mugs, so every caller can be handed a return of their own
    view = place_order(cast.owner, [("MUG-001", 6)])
    deliver(run, services, cast.warehouse, view)
    for who, token in cast.tokens().items():
        ret = request(run, services, cast.owner, view, [("MUG-001", 1)])
        _to(run, services, cast, ret, before)
        # when the caller acts on it, and on an RMA that belongs to no return
        real = gql(document, {"rma": ret.request.rma_code, **extra}, token=token)
        fake = gql(document, {"rma": codes.generate(), **extra}, token=token)
        if who in allowed:
            # then staff with the role move it on, and learn an unknown RMA is unknown
            assert real["data"][operation]["userErrors"] == [], (who, real)
            assert real["data"][operation]["returnRequest"]["status"] == after, who
            assert error_codes(fake) == ["ORDER_NOT_FOUND"], who
        else:
            # then everyone else is refused the same way for the real and the unknown RMA
            expected = "UNAUTHENTICATED" if who == "anonymous" else "FORBIDDEN"
            assert error_codes(real) == [expected], who
            assert strip(real) == strip(fake), who
            assert status_of(services, ret) == before, who


# -- transitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "operation"),
    [
        ("REQUESTED", "receiveReturn"),
        ("REQUESTED", "refundReturn"),
        ("APPROVED", "approveReturn"),
        ("APPROVED", "refundReturn"),
        ("REJECTED", "approveReturn"),
        ("REJECTED", "receiveReturn"),
        ("RECEIVED", "rejectReturn"),
        ("REFUNDED", "approveReturn"),
        ("REFUNDED", "receiveReturn"),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    mug_and_tee: OrderView,
    status: str,
    operation: str,
) -> None:
    # given a return in `status`
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    _to(run, services, cast, ret, status)
    mails = sql_count(services, "SELECT count(*) FROM outbox_emails")
    document, _, _, extra, _ = OPERATIONS[operation]
    # when an admin (who holds every role) tries a step that status does not allow
    payload = gql.data(document, {"rma": ret.request.rma_code, **extra}, token=cast.admin.token)[
        operation
    ]
    # then it is a CONFLICT on the RMA, and nothing changed, nothing was emailed
    assert payload["returnRequest"] is None
    [error] = payload["userErrors"]
    assert (error["code"], error["field"]) == ("CONFLICT", "rma")
    assert status_of(services, ret) == status
    assert sql_count(services, "SELECT count(*) FROM outbox_emails") == mails


# -- refunds --------------------------------------------------------------------------------


def test_a_partial_return_refunds_the_items_and_a_full_one_the_shipping_too(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given the mug returned, approved by support and received by the warehouse
    mug = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    gql.data(APPROVE, {"rma": mug.request.rma_code}, token=cast.support.token)
    received = gql.data(
        RECEIVE,
        {"rma": mug.request.rma_code, "lines": [{"sku": "MUG-001", "quantity": 1}]},
        token=cast.warehouse.token,
    )["receiveReturn"]["returnRequest"]
    assert received["lines"] == [{"sku": "MUG-001", "quantity": 1, "receivedQuantity": 1}]
    # then the order is partly returned
    assert order_status(services, mug_and_tee.order) == "PARTIALLY_RETURNED"
    # when an admin refunds it
    first = gql.data(REFUND, {"rma": mug.request.rma_code}, token=cast.admin.token)
    # then the mug's price comes back, without shipping (a partial return)
    assert first["refundReturn"]["returnRequest"]["refund"] == {"amount": 1299, "currency": "EUR"}
    assert [r.amount_minor for r in refunds(services)] == [1299]
    assert refunded_of(services, mug_and_tee) == 1299
    # when the T-shirt, the rest of the order, goes the same way
    tee = request(run, services, cast.owner, mug_and_tee, [("TEE-BLK-M", 1)])
    approve(run, services, cast, tee)
    receive(run, services, cast, tee)
    second = gql.data(REFUND, {"rma": tee.request.rma_code}, token=cast.admin.token)
    # then its price and the shipping fee come back: everything paid is refunded
    assert second["refundReturn"]["returnRequest"]["refund"]["amount"] == 2499 + 495
    assert [r.amount_minor for r in refunds(services)] == [1299, 2994]
    assert refunded_of(services, mug_and_tee) == mug_and_tee.order.total_minor
    assert order_status(services, mug_and_tee.order) == "RETURNED"
    # then every refund went to the order's charge with a key of its own
    charge = mug_and_tee.order.payment_reference
    assert {r.charge_reference for r in refunds(services)} == {charge}
    assert len({r.idempotency_key for r in refunds(services)}) == 2


def test_only_what_came_back_is_refunded_and_the_rest_can_be_returned_again(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given two mugs asked back, of which the parcel held one
    view = place_order(cast.owner, [("MUG-001", 2)])
    deliver(run, services, cast.warehouse, view)
    ret = request(run, services, cast.owner, view, [("MUG-001", 2)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret, [("MUG-001", 1)])
    # when the admin refunds
    payload = gql.data(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    # then one mug is refunded, and the other one may be returned again
    assert payload["refundReturn"]["returnRequest"]["refund"]["amount"] == 1299
    eligibility = gql.data(ELIGIBILITY, {"code": view.order.code}, token=cast.owner.token)
    mug = eligibility["returnEligibility"]["lines"][0]
    assert (mug["returnedQuantity"], mug["returnableQuantity"]) == (1, 1)


def test_the_same_refund_asked_twice_refunds_once(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given a received return
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    # when the admin sends the refund twice (a retry after a timeout, a double click)
    first = gql.data(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    second = gql.data(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    # then both answers show the one refund, and money moved once
    assert first["refundReturn"] == second["refundReturn"]
    assert second["refundReturn"]["returnRequest"]["status"] == "REFUNDED"
    assert [r.amount_minor for r in refunds(services)] == [1299]
    assert refunded_of(services, mug_and_tee) == 1299
    assert emails(services, "return_refunded") == 1
    assert (
        sql_count(
            services,
            "SELECT count(*) FROM audit_entries WHERE action = 'refund_return' "
            "AND outcome = 'refunded'",
        )
        == 1
    )


def test_a_provider_outage_leaves_the_return_retryable_with_nothing_half_written(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given a received return, and the payment provider down
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    provider(services).down = True
    # when the admin refunds
    failed = gql(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    # then the answer says to try again, and nothing of the refund was written
    assert error_codes(failed) == ["SERVICE_UNAVAILABLE"]
    assert status_of(services, ret) == "RECEIVED"
    assert refunded_of(services, mug_and_tee) == 0
    assert refunds(services) == []
    assert emails(services, "return_refunded") == 0
    seen = gql.data(RETURN, {"rma": ret.request.rma_code}, token=cast.owner.token)
    assert seen["returnRequest"]["refund"] is None
    # then the failed attempt is in the audit log
    assert (
        sql_count(
            services,
            "SELECT count(*) FROM audit_entries WHERE action = 'refund_return' "
            "AND outcome = 'provider_unavailable'",
        )
        == 1
    )
    # when the provider is back and the admin retries
    provider(services).down = False
    retried = gql.data(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    # then the refund goes through, once
    assert retried["refundReturn"]["returnRequest"]["status"] == "REFUNDED"
    assert [r.amount_minor for r in refunds(services)] == [1299]
    assert refunded_of(services, mug_and_tee) == 1299
    assert emails(services, "return_refunded") == 1


def test_a_refund_whose_answer_was_lost_is_not_made_twice_on_retry(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given a received return, and a provider that refunds but whose answer gets lost
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    provider(services).lose_answers = 1
    # when the admin refunds: the money moved, but we never heard back
    assert error_codes(gql(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)) == [
        "SERVICE_UNAVAILABLE"
    ]
    assert [r.amount_minor for r in refunds(services)] == [1299]
    assert status_of(services, ret) == "RECEIVED"
    # when the admin retries
    retried = gql.data(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    # then the provider recognises the same refund: money moved once, recorded once
    assert retried["refundReturn"]["returnRequest"]["status"] == "REFUNDED"
    assert provider(services).refund_calls == 2
    assert [r.amount_minor for r in refunds(services)] == [1299]
    assert refunded_of(services, mug_and_tee) == 1299


def test_a_refund_left_pending_by_an_outage_is_completed_by_the_reconciler(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given a received return whose refund the provider did not take (an outage)
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    provider(services).down = True
    assert error_codes(gql(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)) == [
        "SERVICE_UNAVAILABLE"
    ]
    provider(services).down = False
    # when the reconciler finds the refund due (no request retries it)
    with db_session(services) as session:
        session.execute(text("UPDATE payment_refunds SET next_attempt_at = created_at"))
        session.commit()
    assert run(services.refunds.resend_due(timedelta(0))) == 1
    # then the return is refunded once, the customer is told, and the step is the admin's
    assert status_of(services, ret) == "REFUNDED"
    assert [r.amount_minor for r in refunds(services)] == [1299]
    assert refunded_of(services, mug_and_tee) == 1299
    assert emails(services, "return_refunded") == 1
    edges = gql.data(AUDIT, {"filter": {"action": ["refund_return"]}}, token=cast.admin.token)[
        "auditLog"
    ]["edges"]
    steps = [(e["node"]["actorEmail"], e["node"]["outcome"]) for e in reversed(edges)]
    assert steps == [
        (cast.admin.email, "provider_unavailable"),
        (cast.admin.email, "refunded"),
    ]
    # then asking again answers with that refund and moves nothing
    again = gql.data(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    assert again["refundReturn"]["returnRequest"]["refund"]["amount"] == 1299
    assert [r.amount_minor for r in refunds(services)] == [1299]


def test_a_refund_never_exceeds_what_was_paid_minus_earlier_refunds(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given an order of which all but 1.00 has been refunded already (e.g. a goodwill refund)
    with db_session(services) as session:
        session.execute(
            text("UPDATE orders SET refunded_minor = total_minor - 100 WHERE id = :id"),
            {"id": mug_and_tee.order.id},
        )
        session.commit()
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    # when the mug (12.99) is refunded
    payload = gql.data(REFUND, {"rma": ret.request.rma_code}, token=cast.admin.token)
    # then only the 1.00 left is refunded
    assert payload["refundReturn"]["returnRequest"]["refund"]["amount"] == 100
    assert [r.amount_minor for r in refunds(services)] == [100]
    assert refunded_of(services, mug_and_tee) == mug_and_tee.order.total_minor


@pytest.fixture
def auto_services(settings: Settings, run: Run[Any]) -> Iterator[Services]:
    """A second set of services on the same database, with AUTO_REFUND_ON_RECEIPT (used on
    the app's event loop through `run`, closed there)."""
    auto = replace(settings, auto_refund_on_receipt=True)
    provider = FlakyRefunds(provider_ledger_url(settings.database_url))
    built = build_services(auto, passwords=FAST_PASSWORDS, payments=provider)
    yield built
    run(built.aclose())


def test_with_auto_refund_on_receipt_the_warehouse_receipt_refunds(
    run: Run[Any], auto_services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given AUTO_REFUND_ON_RECEIPT and an approved return
    ret = request(run, auto_services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, auto_services, cast, ret)
    # when the warehouse receives it
    done = receive(run, auto_services, cast, ret)
    # then it is refunded at once, and the audit log says so
    assert done.request.status == "REFUNDED" and done.request.refund_minor == 1299
    assert [r.amount_minor for r in refunds(auto_services)] == [1299]
    assert emails(auto_services, "return_received") == 1
    assert emails(auto_services, "return_refunded") == 1
    with db_session(auto_services) as session:
        reasons = list(
            session.execute(
                text("SELECT reason FROM audit_entries WHERE action = 'refund_return'")
            ).scalars()
        )
    assert len(reasons) == 1 and "automatic on receipt" in reasons[0]


def test_with_auto_refund_a_provider_outage_keeps_the_receipt_and_the_refund_retryable(
    run: Run[Any], auto_services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given AUTO_REFUND_ON_RECEIPT, an approved return, and the provider down
    ret = request(run, auto_services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, auto_services, cast, ret)
    provider(auto_services).down = True
    # when the warehouse receives it
    done = receive(run, auto_services, cast, ret)
    # then the receipt stands (RECEIVED), nothing was refunded
    assert done.request.status == "RECEIVED"
    assert status_of(auto_services, ret) == "RECEIVED"
    assert refunds(auto_services) == []
    # when the provider is back and an admin refunds
    provider(auto_services).down = False
    refunded = run(auto_services.returns.refund(cast.admin.viewer, ret.request.rma_code, IP))
    # then the refund goes through once
    assert refunded.request.status == "REFUNDED"
    assert [r.amount_minor for r in refunds(auto_services)] == [1299]


# -- receiving and rejecting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "field", "message"),
    [
        ([{"sku": "MUG-001", "quantity": 2}], "lines[0].quantity", "Only 1 of MUG-001"),
        ([{"sku": "TEE-BLK-M", "quantity": 1}], "lines[0].sku", "no line with this SKU"),
        ([{"sku": "MUG-001", "quantity": 0}], "lines", "at least one unit"),
    ],
)
def test_a_receipt_that_does_not_fit_the_return_changes_nothing(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    mug_and_tee: OrderView,
    lines: list[dict[str, Any]],
    field: str,
    message: str,
) -> None:
    # given an approved return of one mug
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    # when the warehouse counts something else
    payload = gql.data(
        RECEIVE, {"rma": ret.request.rma_code, "lines": lines}, token=cast.warehouse.token
    )["receiveReturn"]
    # then it is told what is wrong, and the return is still waiting
    [error] = payload["userErrors"]
    assert error["field"] == field and message in error["message"]
    assert status_of(services, ret) == "APPROVED"
    assert order_status(services, mug_and_tee.order) == "DELIVERED"
    assert emails(services, "return_received") == 0


def test_a_rejection_tells_the_customer_why_and_frees_the_units(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given a requested return of the mug
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    # when support rejects it without a reason
    empty = gql.data(REJECT, {"rma": ret.request.rma_code, "reason": " "}, token=cast.support.token)
    # then a reason is required
    assert empty["rejectReturn"]["userErrors"][0]["field"] == "reason"
    assert status_of(services, ret) == "REQUESTED"
    # when support rejects it with a reason
    why = "The mug shows signs of use"
    gql.data(REJECT, {"rma": ret.request.rma_code, "reason": why}, token=cast.support.token)
    # then the customer sees the rejection and its reason, and is emailed it
    seen = gql.data(RETURN, {"rma": ret.request.rma_code}, token=cast.owner.token)
    assert seen["returnRequest"]["status"] == "REJECTED"
    assert seen["returnRequest"]["rejectionReason"] == why
    assert seen["returnRequest"]["rejectedAt"] is not None
    assert why in email_body(services, "return_rejected")
    # then the mug can be asked back again
    eligibility = gql.data(ELIGIBILITY, {"code": mug_and_tee.order.code}, token=cast.owner.token)
    assert eligibility["returnEligibility"]["lines"][0]["returnableQuantity"] == 1


# -- emails, status, live updates, audit ---------------------------------------------------


def test_the_customer_is_emailed_at_each_step_and_sees_the_progress(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given a requested return
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    rma = codes.display(ret.request.rma_code)
    # when it is approved, received and refunded
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    run(services.returns.refund(cast.admin.viewer, ret.request.rma_code, IP))
    # then one email per step went to the owner, each naming the RMA
    kinds = ["return_requested", "return_approved", "return_received", "return_refunded"]
    with db_session(services) as session:
        rows = session.execute(
            text(
                "SELECT kind, recipient, body_text FROM outbox_emails "
                "WHERE kind LIKE 'return_%' ORDER BY id"
            )
        ).all()
    assert [r.kind for r in rows] == kinds
    assert {r.recipient for r in rows} == {cast.owner.email}
    assert all(rma in r.body_text for r in rows)
    assert "EUR 12.99" in rows[-1].body_text
    assert "1 of 1 x Enamel camping mug" in rows[2].body_text
    # then the owner sees every step and the refund
    seen = gql.data(RETURN, {"rma": rma}, token=cast.owner.token)["returnRequest"]
    assert seen["status"] == "REFUNDED"
    assert seen["refund"] == {"amount": 1299, "currency": "EUR"}
    assert all(seen[k] for k in ("requestedAt", "approvedAt", "receivedAt", "refundedAt"))
    order = gql.data(ORDER_RETURNS, {"code": mug_and_tee.order.code}, token=cast.owner.token)
    assert order["order"]["status"] == "PARTIALLY_RETURNED"
    assert order["order"]["refunded"]["amount"] == 1299
    assert order["order"]["returns"][0]["refund"]["amount"] == 1299


def test_subscribers_see_the_staff_steps(
    run: Run[Any], http: TestClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given a requested return and the owner following the order live
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    with connect(http, cast.owner.token) as stream:
        assert stream.next()["type"] == "connection_ack"
        subscribe(stream, mug_and_tee.order.code)
        wait_for_subscriber(services, mug_and_tee.order.id)
        # when support approves and the warehouse receives
        approve(run, services, cast, ret)
        receive(run, services, cast, ret)
        first, second = stream.next(), stream.next()
    # then the owner is told twice, the second time with the order partly returned
    updates = [m["payload"]["data"]["orderUpdates"] for m in (first, second)]
    assert [u["type"] for u in updates] == ["RETURN_UPDATED", "RETURN_UPDATED"]
    assert updates[1]["order"]["status"] == "PARTIALLY_RETURNED"


def test_a_return_from_an_early_parcel_counts_when_the_last_one_arrives(
    run: Run[Any], services: Services, cast: Cast, place_order: Callable[..., OrderView]
) -> None:
    # given a split order: the mug delivered and returned, the T-shirt still on its way
    view = place_order(cast.owner, [("MUG-001", 1), ("TEE-BLK-M", 1)])
    deliver(run, services, cast.warehouse, view, lines=[("MUG-001", 1)])
    pack(run, services, cast.warehouse, view.order, [("TEE-BLK-M", 1)])
    tee = ship(run, services, cast.warehouse, view.order, lines=[("TEE-BLK-M", 1)])
    ret = request(run, services, cast.owner, view, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    # then the order keeps its shipping status while a parcel is on its way
    assert order_status(services, view.order) == "SHIPPED"
    # when the T-shirt is delivered
    event(run, services, cast.warehouse, view.order, tee.shipment.tracking_number, "DELIVERED")
    # then the order is partly returned, not merely delivered
    assert order_status(services, view.order) == "PARTIALLY_RETURNED"


def test_the_audit_log_covers_the_staff_steps(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given an order packed, shipped and delivered by the warehouse (the fixture), and a
    # return approved by support, received by the warehouse and refunded by an admin
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    approve(run, services, cast, ret)
    receive(run, services, cast, ret)
    run(services.returns.refund(cast.admin.viewer, ret.request.rma_code, IP))
    # when an admin reads the audit log of the order
    edges = gql.data(AUDIT, {"filter": {"code": mug_and_tee.order.code}}, token=cast.admin.token)[
        "auditLog"
    ]["edges"]
    entries = [e["node"] for e in reversed(edges)]  # oldest first
    # then every staff step is there, with who did it and on which order (masked)
    steps = [(e["action"], e["actorEmail"], e["outcome"]) for e in entries]
    assert steps == [
        ("pack_order", cast.warehouse.email, "packed"),
        ("ship_order", cast.warehouse.email, "shipped"),
        ("add_tracking_event", cast.warehouse.email, "recorded"),
        ("approve_return", cast.support.email, "approved"),
        ("receive_return", cast.warehouse.email, "received"),
        ("refund_return", cast.admin.email, "refunded"),
    ]
    assert {e["code"] for e in entries} == {codes.mask(mug_and_tee.order.code)}
    assert entries[0]["reason"] == "1 x MUG-001, 1 x TEE-BLK-M"
    assert entries[3]["reason"] == f"RMA {codes.mask(ret.request.rma_code)}"
    assert "1299 EUR" in entries[5]["reason"]
    # then the customer's own request is not a staff step, and is not there
    assert all(e["actorEmail"] != cast.owner.email for e in entries)


def test_staff_reads_of_returns_and_unknown_rmas_are_audited(
    run: Run[Any], gql: GraphQLClient, services: Services, cast: Cast, mug_and_tee: OrderView
) -> None:
    # given the owner's return
    ret = request(run, services, cast.owner, mug_and_tee, [("MUG-001", 1)])
    # when support reads it, the owner reads it, and the warehouse tries an unknown RMA
    gql.data(RETURN, {"rma": ret.request.rma_code}, token=cast.support.token)
    gql.data(RETURN, {"rma": ret.request.rma_code}, token=cast.owner.token)
    unknown = codes.generate()
    gql(
        RECEIVE,
        {"rma": unknown, "lines": [{"sku": "MUG-001", "quantity": 1}]},
        token=cast.warehouse.token,
    )
    # then the staff read and the miss are in the audit log; the owner's own read is not
    edges = gql.data(
        AUDIT, {"filter": {"action": ["return_lookup", "receive_return"]}}, token=cast.admin.token
    )["auditLog"]["edges"]
    entries = [
        (e["node"]["action"], e["node"]["actorEmail"], e["node"]["outcome"], e["node"]["reason"])
        for e in reversed(edges)
    ]
    assert entries == [
        ("return_lookup", cast.support.email, "found", f"RMA {codes.mask(ret.request.rma_code)}"),
        ("receive_return", cast.warehouse.email, "not_found", f"RMA {codes.mask(unknown)}"),
    ]


def test_fulfilment_reads_and_misses_are_audited_too(
    run: Run[Any],
    gql: GraphQLClient,
    services: Services,
    cast: Cast,
    place_order: Callable[..., OrderView],
) -> None:
    # given an order waiting to be picked
    view = place_order(cast.owner)
    unknown = codes.generate()
    # when the warehouse lists the queue, opens the pick list, and mistypes another code
    run(services.shipments.fulfillment_queue(cast.warehouse.viewer, 10, None))
    run(services.shipments.pick_list(cast.warehouse.viewer, view.order.code, IP))
    with pytest.raises(OrderNotFound):
        run(services.shipments.pick_list(cast.warehouse.viewer, unknown, IP))
    # then each is in the audit log, with who and which order (masked)
    edges = gql.data(
        AUDIT,
        {"filter": {"action": ["fulfillment_queue", "pick_list"]}},
        token=cast.admin.token,
    )["auditLog"]["edges"]
    entries = [
        (e["node"]["action"], e["node"]["actorEmail"], e["node"]["outcome"], e["node"]["code"])
        for e in reversed(edges)
    ]
    assert entries == [
        ("fulfillment_queue", cast.warehouse.email, "listed", None),
        ("pick_list", cast.warehouse.email, "found", codes.mask(view.order.code)),
        ("pick_list", cast.warehouse.email, "not_found", codes.mask(unknown)),
    ]
