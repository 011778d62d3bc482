"""supportOrder (SUPPORT, ADMIN; reason required; every call audited; per-agent budget) and
auditLog (ADMIN only, read-only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.container import build_services
from app.main import create_app
from app.security import codes
from app.security.roles import Role
from app.settings import RateLimits, Settings
from tests.conftest import (
    FAST_PASSWORDS,
    Account,
    GraphQLClient,
    Run,
    error_codes,
    sql_count,
)

SUPPORT = """
query S($code: String!, $reason: String!) {
  supportOrder(code: $code, reason: $reason) {
    order { code status total { amount } shippingAddress { line1 city } payment { brand last4 } }
    customer { email name }
  }
}
"""
AUDIT = """
query A($filter: AuditFilterInput, $first: Int, $after: String) {
  auditLog(filter: $filter, first: $first, after: $after) {
    edges { cursor node { at actorEmail actorRole action code outcome reason clientIp } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def audit_rows(services: Any) -> int:
    return sql_count(services, "SELECT count(*) FROM audit_entries WHERE action='support_lookup'")


@pytest.mark.parametrize("role", [Role.SUPPORT, Role.ADMIN])
def test_support_sees_the_full_order_and_the_lookup_is_audited(
    gql: GraphQLClient,
    services: Any,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
    role: Role,
) -> None:
    view = place_order(owner)
    agent = make_account(role)
    result = gql.data(
        SUPPORT, {"code": codes.display(view.order.code), "reason": "TICKET-123"}, token=agent.token
    )["supportOrder"]
    assert result["order"]["code"] == codes.display(view.order.code)
    assert result["customer"]["email"] == owner.email
    assert result["order"]["shippingAddress"]["city"] == "Berlin"
    assert result["order"]["payment"] == {"brand": "VISA", "last4": "4242"}
    log = gql.data(
        AUDIT, {"filter": {"action": ["support_lookup"]}}, token=make_account(Role.ADMIN).token
    )["auditLog"]["edges"]
    entry = log[0]["node"]
    assert entry["actorEmail"] == agent.email and entry["actorRole"] == role.value
    assert entry["outcome"] == "found" and entry["reason"] == "TICKET-123"
    assert entry["code"] == codes.mask(view.order.code)
    assert entry["clientIp"] == "10.0.0.1"


@pytest.mark.parametrize("role", [None, Role.CUSTOMER, Role.WAREHOUSE])
def test_others_are_refused_without_the_code_mattering(
    gql: GraphQLClient,
    services: Any,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
    role: Role | None,
) -> None:
    view = place_order(owner)
    token = make_account(role).token if role else None
    real = gql(SUPPORT, {"code": view.order.code, "reason": "TICKET-1"}, token=token)
    fake = gql(SUPPORT, {"code": codes.generate(), "reason": "TICKET-1"}, token=token)
    expected = "UNAUTHENTICATED" if role is None else "FORBIDDEN"
    assert error_codes(real) == [expected]
    assert real["errors"][0]["message"] == fake["errors"][0]["message"]
    assert real["data"] == fake["data"]


def test_owner_cannot_use_the_support_door_even_for_their_own_order(
    gql: GraphQLClient, owner: Account, place_order: Callable[..., Any]
) -> None:
    view = place_order(owner)
    body = gql(SUPPORT, {"code": view.order.code, "reason": "mine"}, token=owner.token)
    assert error_codes(body) == ["FORBIDDEN"]


def test_a_reason_is_required_and_the_attempt_is_audited(
    gql: GraphQLClient,
    services: Any,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
) -> None:
    view = place_order(owner)
    agent = make_account(Role.SUPPORT)
    body = gql(SUPPORT, {"code": view.order.code, "reason": "  "}, token=agent.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["data"]["supportOrder"] is None
    assert sql_count(services, "SELECT count(*) FROM audit_entries WHERE outcome='no_reason'") == 1


def test_not_found_and_invalid_codes_are_audited_and_unknown_codes_count_as_failures(
    gql: GraphQLClient, services: Any, make_account: Callable[..., Account], run: Run[Any]
) -> None:
    agent = make_account(Role.SUPPORT)
    assert error_codes(
        gql(SUPPORT, {"code": codes.generate(), "reason": "T-9"}, token=agent.token)
    ) == ["ORDER_NOT_FOUND"]
    assert error_codes(gql(SUPPORT, {"code": "1234", "reason": "T-9"}, token=agent.token)) == [
        "INVALID_ORDER_CODE"
    ]
    assert audit_rows(services) == 2
    outcomes = sql_count(
        services, "SELECT count(DISTINCT outcome) FROM audit_entries WHERE action='support_lookup'"
    )
    assert outcomes == 2
    key = f"user:{agent.viewer.public_id}"
    limiter = services.limiter
    # the unknown code is one failure of the agent's staff budget; the typo is none (the
    # check symbol is public); the customer failure budget is not the agent's at this door
    staff_left = run(limiter.remaining(limiter.staff_failures_per_user, key))
    assert staff_left == limiter.staff_failures_per_user.item.amount - 1
    assert run(limiter.remaining(limiter.failures_per_user, key)) == 10


def test_agents_have_their_own_budget(
    settings: Settings,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
) -> None:
    tight = replace(settings, rate_limits=replace(RateLimits(), support_lookups_per_agent="2/hour"))
    services = build_services(tight, passwords=FAST_PASSWORDS)
    view = place_order(owner)
    # same database and signing key: the agent's token works on the tight app too
    token = make_account(Role.SUPPORT).token
    # the app's lifespan closes `services` when the client ends
    with TestClient(create_app(tight, run_sender=False, services=services)) as http:
        gql = GraphQLClient(http)
        results = [
            error_codes(gql(SUPPORT, {"code": view.order.code, "reason": "T-1"}, token=token))
            for _ in range(3)
        ]
    assert results == [[], [], ["RATE_LIMITED"]]
    assert (
        sql_count(services, "SELECT count(*) FROM audit_entries WHERE outcome='rate_limited'") == 1
    )


@pytest.mark.parametrize("role", [None, Role.CUSTOMER, Role.SUPPORT, Role.WAREHOUSE])
def test_only_admins_read_the_audit_log(
    gql: GraphQLClient, make_account: Callable[..., Account], role: Role | None
) -> None:
    token = make_account(role).token if role else None
    expected = "UNAUTHENTICATED" if role is None else "FORBIDDEN"
    assert error_codes(gql(AUDIT, {}, token=token)) == [expected]


def test_staff_logins_are_audited_and_customer_logins_are_not(
    gql: GraphQLClient, services: Any, make_account: Callable[..., Account]
) -> None:
    make_account(Role.CUSTOMER)
    warehouse = make_account(Role.WAREHOUSE)
    admin = make_account(Role.ADMIN)
    entries = gql.data(AUDIT, {"filter": {"action": ["login"]}}, token=admin.token)
    who = {e["node"]["actorEmail"] for e in entries["auditLog"]["edges"]}
    assert who == {warehouse.email, admin.email}


def test_the_audit_log_pages_newest_first_and_has_no_mutations(
    gql: GraphQLClient, services: Any, make_account: Callable[..., Account]
) -> None:
    agent = make_account(Role.SUPPORT)
    for i in range(5):
        gql(SUPPORT, {"code": codes.generate(), "reason": f"T-{i}"}, token=agent.token)
    admin = make_account(Role.ADMIN)
    seen: list[str] = []
    after = None
    while True:
        page = gql.data(
            AUDIT,
            {"filter": {"action": ["support_lookup"]}, "first": 2, "after": after},
            token=admin.token,
        )["auditLog"]
        seen += [e["node"]["reason"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == [f"T-{i}" for i in reversed(range(5))]
    mutations = gql.data("{ __schema { mutationType { fields { name } } } }")
    names = [f["name"] for f in mutations["__schema"]["mutationType"]["fields"]]
    assert not [n for n in names if "audit" in n.lower()]
