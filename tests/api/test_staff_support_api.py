"""The staff console's support and returns-desk API (issue 16): supportSearch (by customer
email, audited with the ticket, an unknown email and a customer without orders one answer),
requestReturn by SUPPORT/ADMIN for the customer (supportReason), returnsQueue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.orders.service import OrderView
from app.security import codes
from app.support.search import mask_email
from tests.conftest import Account, GraphQLClient, Run, error_codes, sql_count
from tests.support.actors import Cast, make_cast
from tests.support.returns import approve, deliver, emails, request

SEARCH = """
query S($email: String!, $reason: String!, $first: Int) {
  supportSearch(customerEmail: $email, reason: $reason, first: $first) {
    code status placedAt total { amount currency } itemCount
  }
}
"""
AUDIT = """
query A($action: [String!]) {
  auditLog(filter: {action: $action}) {
    edges { node { actorEmail actorRole action code outcome reason subject clientIp } }
  }
}
"""
STAFF_REQUEST = """
mutation R($code: String!, $why: String, $sku: String! = "MUG-001", $qty: Int! = 1) {
  requestReturn(code: $code, lines: [{sku: $sku, quantity: $qty}], reason: DAMAGED,
                supportReason: $why) {
    returnRequest { rma orderCode status reason lines { sku quantity } }
    userErrors { field message code }
  }
}
"""
QUEUE = """
query Q($statuses: [ReturnStatus!], $first: Int, $after: String) {
  returnsQueue(statuses: $statuses, first: $first, after: $after) {
    edges { cursor node { rma orderCode status requestedAt lines { sku quantity } } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


@pytest.fixture
def cast(owner: Account, other_customer: Account, make_account: Callable[..., Account]) -> Cast:
    return make_cast(owner, other_customer, make_account)


def audit(gql: GraphQLClient, cast: Cast, action: str) -> list[dict[str, Any]]:
    edges = gql.data(AUDIT, {"action": [action]}, token=cast.admin.token)["auditLog"]["edges"]
    return [edge["node"] for edge in edges]


def remaining(run: Run[Any], services: Any, account: Account) -> tuple[int, int]:
    """(support budget, staff failure budget) left to this agent."""
    limiter = services.limiter
    key = f"user:{account.viewer.public_id}"
    return (
        run(limiter.remaining(limiter.support_per_agent, key)),
        run(limiter.remaining(limiter.staff_failures_per_user, key)),
    )


# -- supportSearch ----------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["support", "admin"])
def test_support_finds_a_customers_orders_by_email_newest_first_and_it_is_audited(
    gql: GraphQLClient, cast: Cast, place_order: Callable[..., OrderView], role: str
) -> None:
    first = place_order(cast.owner, [("MUG-001", 2)])
    second = place_order(cast.owner, [("MUG-001", 1), ("TEE-BLK-M", 3)])
    place_order(cast.other_customer)
    agent: Account = getattr(cast, role)
    typed = "  " + cast.owner.email.upper() + " "  # as read out on the phone
    found = gql.data(SEARCH, {"email": typed, "reason": "TICKET-77"}, token=agent.token)
    rows = found["supportSearch"]
    assert [row["code"] for row in rows] == [
        codes.display(second.order.code),
        codes.display(first.order.code),
    ]
    assert rows[0]["itemCount"] == 4 and rows[1]["itemCount"] == 2
    assert rows[0]["total"] == {"amount": second.order.total_minor, "currency": "EUR"}
    assert rows[0]["status"] == "PLACED"
    entry = audit(gql, cast, "support_search")[0]
    assert entry["actorEmail"] == agent.email and entry["actorRole"] == agent.role.value
    assert entry["outcome"] == "found" and entry["reason"] == "TICKET-77"
    assert entry["subject"] == mask_email(cast.owner.email) != cast.owner.email
    assert entry["subject"].startswith(cast.owner.email[0] + "***@")
    assert entry["clientIp"] == "10.0.0.1"
    # `first` caps the list (newest kept), and out-of-range is refused
    one = gql.data(SEARCH, {"email": typed, "reason": "T-1", "first": 1}, token=agent.token)
    assert [row["code"] for row in one["supportSearch"]] == [codes.display(second.order.code)]
    too_many = gql(SEARCH, {"email": typed, "reason": "T-1", "first": 51}, token=agent.token)
    assert error_codes(too_many) == ["BAD_USER_INPUT"]


def test_an_unknown_email_and_a_customer_without_orders_are_one_answer_audit_and_spend(
    gql: GraphQLClient, services: Any, cast: Cast, run: Run[Any]
) -> None:
    # given a customer who never ordered and an email nobody has
    agent = cast.support
    answers, entries, spent = [], [], []
    for email in (cast.other_customer.email, "nobody-" + cast.other_customer.email):
        before = remaining(run, services, agent)
        body = gql(SEARCH, {"email": email, "reason": "TICKET-9"}, token=agent.token)
        after = remaining(run, services, agent)
        answers.append((body["_status"], body.get("errors"), body["data"]))
        entries.append(audit(gql, cast, "support_search")[0])
        spent.append((before[0] - after[0], before[1] - after[1]))
    assert answers[0] == answers[1] == (200, None, {"supportSearch": []})
    # one unit of the support budget and one staff failure, each time
    assert spent == [(1, 1), (1, 1)]
    for entry in entries:
        assert (entry["outcome"], entry["reason"]) == ("none", "TICKET-9")
    assert {k: v for k, v in entries[0].items() if k != "subject"} == {
        k: v for k, v in entries[1].items() if k != "subject"
    }


def test_a_search_needs_a_reason_and_a_valid_email(
    gql: GraphQLClient, services: Any, cast: Cast, run: Run[Any]
) -> None:
    agent = cast.support
    before = remaining(run, services, agent)
    no_reason = gql(SEARCH, {"email": cast.owner.email, "reason": " "}, token=agent.token)
    assert error_codes(no_reason) == ["BAD_USER_INPUT"]
    assert remaining(run, services, agent) == before  # refused before any budget
    bad = gql(SEARCH, {"email": "not an email", "reason": "T-12"}, token=agent.token)
    assert error_codes(bad) == ["BAD_USER_INPUT"]
    assert bad["errors"][0]["extensions"].get("field") in (None, "customerEmail")
    outcomes = [e["outcome"] for e in audit(gql, cast, "support_search")]
    assert outcomes == ["bad_user_input", "bad_user_input"]


@pytest.mark.parametrize("caller", ["anonymous", "owner", "WAREHOUSE"])
def test_only_support_and_admin_may_search(
    gql: GraphQLClient, cast: Cast, place_order: Callable[..., OrderView], caller: str
) -> None:
    place_order(cast.owner)
    token = cast.tokens()[caller]
    known = gql(SEARCH, {"email": cast.owner.email, "reason": "T-1"}, token=token)
    unknown = gql(SEARCH, {"email": "x" + cast.owner.email, "reason": "T-1"}, token=token)
    assert error_codes(known) == ["UNAUTHENTICATED" if token is None else "FORBIDDEN"]
    assert (known["_status"], known["errors"], known["data"]) == (
        unknown["_status"],
        unknown["errors"],
        unknown["data"],
    )


def test_a_locked_agent_gets_rate_limited_whatever_the_email(
    gql: GraphQLClient,
    services: Any,
    cast: Cast,
    run: Run[Any],
    place_order: Callable[..., OrderView],
) -> None:
    place_order(cast.owner)
    limiter = services.limiter
    key = f"user:{cast.support.viewer.public_id}"
    left = run(limiter.remaining(limiter.staff_failures_per_user, key))
    for _ in range(left):  # spend the staff failure budget on empty searches
        run(limiter.record(limiter.staff_failures_per_user, key))
    locked_real = gql(
        SEARCH, {"email": cast.owner.email, "reason": "T-1"}, token=cast.support.token
    )
    locked_none = gql(
        SEARCH, {"email": "z@nowhere.example", "reason": "T-1"}, token=cast.support.token
    )
    assert error_codes(locked_real) == error_codes(locked_none) == ["RATE_LIMITED"]
    assert locked_real["errors"][0]["extensions"]["retryAfter"] > 0


# -- requestReturn for the customer --------------------------------------------------------------
@pytest.fixture
def delivered(
    run: Run[Any], services: Any, cast: Cast, place_order: Callable[..., OrderView]
) -> OrderView:
    view = place_order(cast.owner, [("MUG-001", 2)])
    deliver(run, services, cast.warehouse, view)
    return view


@pytest.mark.parametrize("role", ["support", "admin"])
def test_support_requests_a_return_for_the_customer_audited_with_the_ticket(
    gql: GraphQLClient, services: Any, cast: Cast, delivered: OrderView, role: str
) -> None:
    agent: Account = getattr(cast, role)
    typed = codes.display(delivered.order.code).lower().replace("-", " ")
    body = gql.data(STAFF_REQUEST, {"code": typed, "why": "TICKET-5"}, token=agent.token)
    made = body["requestReturn"]
    assert made["userErrors"] == []
    assert made["returnRequest"]["status"] == "REQUESTED"
    assert made["returnRequest"]["orderCode"] == codes.display(delivered.order.code)
    assert made["returnRequest"]["lines"] == [{"sku": "MUG-001", "quantity": 1}]
    # the customer gets the instructions as if they had asked, and can see the return
    assert emails(services, "return_requested") == 1
    assert (
        sql_count(
            services,
            "SELECT count(*) FROM outbox_emails WHERE kind='return_requested' "
            f"AND recipient='{cast.owner.email}'",
        )
        == 1
    )
    entry = audit(gql, cast, "staff_return_request")[0]
    assert (entry["actorEmail"], entry["outcome"], entry["reason"]) == (
        agent.email,
        "created",
        "TICKET-5",
    )
    assert entry["code"] == codes.mask(delivered.order.code)
    # the same rules as the owner's: the second unit is free, a third is not
    again = gql.data(
        STAFF_REQUEST,
        {"code": delivered.order.code, "why": "TICKET-5", "qty": 2},
        token=agent.token,
    )["requestReturn"]
    assert again["returnRequest"] is None
    assert [e["field"] for e in again["userErrors"]] == ["lines[0].quantity"]
    assert audit(gql, cast, "staff_return_request")[0]["outcome"] == "bad_user_input"


def test_staff_without_a_ticket_and_customers_with_one_get_a_user_error_on_support_reason(
    gql: GraphQLClient, services: Any, cast: Cast, delivered: OrderView
) -> None:
    for token, why in (
        (cast.support.token, None),
        (cast.admin.token, " "),
        (cast.owner.token, "T-1"),
    ):
        body = gql.data(STAFF_REQUEST, {"code": delivered.order.code, "why": why}, token=token)
        errors = body["requestReturn"]["userErrors"]
        assert [(e["field"], e["code"]) for e in errors] == [("supportReason", "BAD_USER_INPUT")]
    assert emails(services, "return_requested") == 0
    # the owner without one still asks as before
    own = gql.data(STAFF_REQUEST, {"code": delivered.order.code}, token=cast.owner.token)
    assert own["requestReturn"]["returnRequest"]["status"] == "REQUESTED"


def test_warehouse_with_a_ticket_is_forbidden_whatever_the_code(
    gql: GraphQLClient, cast: Cast, delivered: OrderView
) -> None:
    real = gql(
        STAFF_REQUEST, {"code": delivered.order.code, "why": "T-1"}, token=cast.warehouse.token
    )
    fake = gql(STAFF_REQUEST, {"code": codes.generate(), "why": "T-1"}, token=cast.warehouse.token)
    assert error_codes(real) == ["FORBIDDEN"]
    assert (real["errors"], real["data"]) == (fake["errors"], fake["data"])


def test_an_unknown_code_is_a_staff_failure_audited_and_a_typo_is_not(
    gql: GraphQLClient, services: Any, cast: Cast, run: Run[Any], delivered: OrderView
) -> None:
    agent = cast.support
    before = remaining(run, services, agent)
    unknown = gql(STAFF_REQUEST, {"code": codes.generate(), "why": "T-2"}, token=agent.token)
    assert error_codes(unknown) == ["ORDER_NOT_FOUND"]
    assert remaining(run, services, agent) == (before[0] - 1, before[1] - 1)
    typo = codes.display(delivered.order.code)[:-1] + (
        "X" if delivered.order.code[-1] != "X" else "Y"
    )
    body = gql(STAFF_REQUEST, {"code": typo, "why": "T-2"}, token=agent.token)
    assert error_codes(body) == ["INVALID_ORDER_CODE"]
    assert remaining(run, services, agent) == (before[0] - 2, before[1] - 1)
    outcomes = [e["outcome"] for e in audit(gql, cast, "staff_return_request")]
    assert outcomes == ["invalid_code", "order_not_found"]


# -- returnsQueue --------------------------------------------------------------------------------
def test_the_returns_queue_lists_waiting_returns_oldest_first_page_by_page(
    gql: GraphQLClient,
    services: Any,
    cast: Cast,
    run: Run[Any],
    place_order: Callable[..., OrderView],
) -> None:
    view = place_order(cast.owner, [("MUG-001", 3)])
    deliver(run, services, cast.warehouse, view)
    oldest = request(run, services, cast.owner, view)
    middle = request(run, services, cast.owner, view)
    newest = request(run, services, cast.owner, view)
    approve(run, services, cast, middle)
    run(services.returns.reject(cast.support.viewer, newest.request.rma_code, "10.0.0.9", "Worn"))
    rma = codes.display
    for account in (cast.support, cast.warehouse, cast.admin):
        page = gql.data(QUEUE, {"first": 1}, token=account.token)["returnsQueue"]
        assert [e["node"]["rma"] for e in page["edges"]] == [rma(oldest.request.rma_code)]
        assert page["pageInfo"]["hasNextPage"] is True
        rest = gql.data(QUEUE, {"after": page["pageInfo"]["endCursor"]}, token=account.token)
        nodes = [e["node"] for e in rest["returnsQueue"]["edges"]]
        assert [(n["rma"], n["status"]) for n in nodes] == [
            (rma(middle.request.rma_code), "APPROVED")
        ]
        assert rest["returnsQueue"]["pageInfo"]["hasNextPage"] is False
    rejected = gql.data(QUEUE, {"statuses": ["REJECTED"]}, token=cast.support.token)
    nodes = [e["node"] for e in rejected["returnsQueue"]["edges"]]
    assert [(n["rma"], n["orderCode"]) for n in nodes] == [
        (rma(newest.request.rma_code), rma(view.order.code))
    ]
    assert nodes[0]["lines"] == [{"sku": "MUG-001", "quantity": 1}]


@pytest.mark.parametrize("caller", ["anonymous", "owner", "other customer"])
def test_only_staff_who_read_returns_see_the_queue(
    gql: GraphQLClient, services: Any, cast: Cast, run: Run[Any], delivered: OrderView, caller: str
) -> None:
    request(run, services, cast.owner, delivered)
    body = gql(QUEUE, {}, token=cast.tokens()[caller])
    assert error_codes(body) == ["UNAUTHENTICATED" if caller == "anonymous" else "FORBIDDEN"]
    assert body["data"] is None
