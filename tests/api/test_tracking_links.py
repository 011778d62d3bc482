"""Shareable tracking links: minted and revoked by the owner, viewed by anyone holding the
token, showing shipment status and delivery estimate only, rate-limited, and answering
unknown, expired and revoked tokens alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col
from starlette.testclient import TestClient

from app.container import Services, build_services
from app.db import utcnow
from app.main import create_app
from app.security import codes
from app.security.roles import Role
from app.settings import RateLimits, Settings
from app.shipments.inputs import Place
from app.tracking.models import TrackingLink
from app.tracking.service import digest
from tests.conftest import (
    FAST_PASSWORDS,
    Account,
    GraphQLClient,
    Run,
    db_session,
    error_codes,
)
from tests.support.carriers import event, pack, ship

CREATE = """
mutation C($code: String!, $hours: Int!) {
  createTrackingLink(code: $code, expiresInHours: $hours) {
    link { token expiresAt } userErrors { field code message }
  }
}"""
REVOKE = "mutation R($t: String!) { revokeTrackingLink(token: $t) { ok userErrors { code } } }"
VIEW = """
query V($t: String!) {
  trackingLink(token: $t) {
    estimatedDelivery
    shipments { carrier status estimatedDelivery
                events { status location occurredAt } }
  }
}"""
# Everything the public type could possibly offer, to prove nothing else is there.
VIEW_EVERYTHING = """
query V($t: String!) { trackingLink(token: $t) { __typename estimatedDelivery
  shipments { __typename carrier status estimatedDelivery
              events { __typename status location occurredAt } } } }"""


@pytest.fixture
def shipped(
    services: Services,
    owner: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
    run: Run[Any],
) -> Any:
    view = place_order(owner, [("MUG-001", 2)])
    warehouse = make_account(Role.WAREHOUSE)
    pack(run, services, warehouse, view.order)
    result = ship(run, services, warehouse, view.order, tracking="TRKLINK0001")
    event(
        run,
        services,
        warehouse,
        view.order,
        "TRKLINK0001",
        "IN_TRANSIT",
        location="Leipzig hub, Demo Street 1",
        place=Place("Leipzig", "04109", "DE"),
    )
    return view, result


def mint(gql: GraphQLClient, account: Account, code: str, hours: int = 72) -> str:
    payload = gql.data(CREATE, {"code": code, "hours": hours}, token=account.token)
    assert payload["createTrackingLink"]["userErrors"] == []
    token: str = payload["createTrackingLink"]["link"]["token"]
    return token


def test_anyone_with_the_link_sees_status_and_estimate_only(
    gql: GraphQLClient, owner: Account, shipped: Any
) -> None:
    view, _ = shipped
    token = mint(gql, owner, view.order.code)
    seen = gql.data(VIEW_EVERYTHING, {"t": token})["trackingLink"]  # anonymous
    assert seen["shipments"][0]["carrier"] == "DHL"
    assert seen["shipments"][0]["status"] == "IN_TRANSIT"
    assert seen["shipments"][0]["events"][0]["location"] == "Leipzig"  # the structured town
    text = json.dumps(seen)
    for secret in (
        view.order.code,
        codes.display(view.order.code),
        "MUG-001",
        "Enamel",
        "Berlin",
        "Demo Street",
        "hub",
        "04109",
        "4242",
        "VISA",
        owner.email,
        "TRKLINK0001",
    ):
        assert secret not in text, secret


def test_the_public_type_has_no_field_for_private_data(gql: GraphQLClient) -> None:
    schema = gql.data("""{ a: __type(name: "TrackingLinkView") { fields { name } }
                          b: __type(name: "PublicShipment") { fields { name } }
                          c: __type(name: "PublicTrackingEvent") { fields { name } } }""")
    names = {f["name"] for t in schema.values() for f in t["fields"]}
    assert names == {
        "estimatedDelivery",
        "shipments",
        "carrier",
        "status",
        "events",
        "location",
        "occurredAt",
    }


def test_unknown_expired_and_revoked_links_answer_alike(
    gql: GraphQLClient, services: Services, owner: Account, shipped: Any
) -> None:
    view, _ = shipped
    expired = mint(gql, owner, view.order.code)
    revoked = mint(gql, owner, view.order.code)
    with db_session(services) as session:
        session.execute(
            update(TrackingLink)
            .where(col(TrackingLink.token_digest) == digest(codes.normalise(expired)))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    assert gql.data(REVOKE, {"t": revoked}, token=owner.token)["revokeTrackingLink"]["ok"]
    answers = [gql(VIEW, {"t": t}) for t in (expired, revoked, codes.display(codes.generate()))]
    assert error_codes(answers[0]) == ["ORDER_NOT_FOUND"]
    assert answers[0]["errors"][0]["message"] == answers[1]["errors"][0]["message"]
    assert answers[1]["errors"][0]["message"] == answers[2]["errors"][0]["message"]
    assert answers[0]["data"] == answers[1]["data"] == answers[2]["data"]


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.SUPPORT, Role.WAREHOUSE, Role.ADMIN])
def test_only_the_owner_mints_links(
    gql: GraphQLClient,
    owner: Account,
    make_account: Callable[..., Account],
    shipped: Any,
    role: Role,
) -> None:
    view, _ = shipped
    someone = make_account(role)
    theirs = gql(CREATE, {"code": view.order.code, "hours": 5}, token=someone.token)
    unknown = gql(CREATE, {"code": codes.generate(), "hours": 5}, token=someone.token)
    assert error_codes(theirs) == ["ORDER_NOT_FOUND"]
    assert theirs["errors"][0]["message"] == unknown["errors"][0]["message"]
    assert error_codes(gql(CREATE, {"code": view.order.code, "hours": 5})) == ["UNAUTHENTICATED"]


def test_only_the_owner_revokes(
    gql: GraphQLClient, owner: Account, other_customer: Account, shipped: Any
) -> None:
    view, _ = shipped
    token = mint(gql, owner, view.order.code)
    refused = gql(REVOKE, {"t": token}, token=other_customer.token)
    assert error_codes(refused) == ["ORDER_NOT_FOUND"]
    assert gql.data(VIEW, {"t": token})["trackingLink"]["shipments"]  # still works


def test_lifetime_is_bounded(gql: GraphQLClient, owner: Account, shipped: Any) -> None:
    view, _ = shipped
    for hours in (0, 24 * 31):
        payload = gql.data(CREATE, {"code": view.order.code, "hours": hours}, token=owner.token)
        assert payload["createTrackingLink"]["userErrors"][0]["field"] == "expiresInHours"


def test_views_are_rate_limited_per_link_and_ip(
    settings: Settings, owner: Account, shipped: Any
) -> None:
    view, _ = shipped
    tight = replace(
        settings, rate_limits=replace(RateLimits(), tracking_views_per_token_ip="3/minute")
    )
    services = build_services(tight, passwords=FAST_PASSWORDS)
    # the app's lifespan closes `services` when the client ends
    with TestClient(create_app(tight, run_sender=False, services=services)) as http:
        gql = GraphQLClient(http)
        token = mint(gql, owner, view.order.code)
        outcomes = [error_codes(gql(VIEW, {"t": token})) for _ in range(4)]
    assert outcomes == [[], [], [], ["RATE_LIMITED"]]


def test_guessing_tokens_locks_the_ip_out(settings: Settings) -> None:
    tight = replace(
        settings, rate_limits=replace(RateLimits(), failed_lookups_per_ip="3/15 minutes")
    )
    services = build_services(tight, passwords=FAST_PASSWORDS)
    # the app's lifespan closes `services` when the client ends
    with TestClient(create_app(tight, run_sender=False, services=services)) as http:
        gql = GraphQLClient(http)
        outcomes = [error_codes(gql(VIEW, {"t": codes.generate()}))[0] for _ in range(5)]
    assert outcomes == ["ORDER_NOT_FOUND"] * 3 + ["RATE_LIMITED"] * 2
