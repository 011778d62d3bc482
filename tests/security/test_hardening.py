"""GraphQL hardening: POST-only JSON, size caps, limits on depth/aliases/tokens, no
suggestions, masked internal errors, and production mode without IDE or introspection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import inspect, text
from starlette.testclient import TestClient

from app.container import Services, build_services
from app.main import create_app
from app.orders.service import OrderView
from app.settings import DEV_JWT_SECRET, Settings, SettingsError
from tests.conftest import FAST_PASSWORDS, Account, GraphQLClient, db_session, error_codes


@pytest.fixture
def production(settings: Settings) -> Iterator[TestClient]:
    prod = replace(settings, app_env="production")
    services = build_services(prod, passwords=FAST_PASSWORDS)
    with TestClient(create_app(prod, run_sender=False, services=services)) as client:
        yield client


def test_queries_over_get_are_refused(http: TestClient) -> None:
    response = http.get("/graphql", params={"query": "{ __typename }"})
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    mutation = http.get("/graphql", params={"query": "mutation { logout { ok } }"})
    assert mutation.status_code == 405


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
def test_only_json_posts_are_accepted(http: TestClient, content_type: str) -> None:
    response = http.post(
        "/graphql", content=b"query={__typename}", headers={"content-type": content_type}
    )
    assert response.status_code == 415


def test_oversized_bodies_are_refused(http: TestClient) -> None:
    big = '{"query": "{ __typename }", "variables": {"x": "' + "a" * 70_000 + '"}}'
    response = http.post("/graphql", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_batches_are_refused(http: TestClient) -> None:
    batch = [{"query": "{ __typename }"}, {"query": "{ __typename }"}]
    response = http.post("/graphql", json=batch)
    assert response.status_code == 400
    assert "__typename" not in response.text


def test_every_response_has_a_request_id(http: TestClient, gql: GraphQLClient) -> None:
    response = http.post("/graphql", json={"query": "{ __typename }"})
    assert len(response.headers["x-request-id"]) == 12


def test_field_suggestions_are_never_given(gql: GraphQLClient) -> None:
    body = gql('{ ordr(code: "x") { code } }')
    message = body["errors"][0]["message"]
    assert "ordr" in message  # still readable
    assert "Did you mean" not in message and "order" not in message.replace("ordr", "")


def test_depth_alias_and_token_limits(gql: GraphQLClient) -> None:
    deep = "{ me { " + "email " * 1 + "} " + "}"
    assert not gql(deep).get("errors")
    too_deep = "query { products { edges { node { price { amount } } } } }"
    assert not gql(too_deep).get("errors")
    many = "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"
    assert "aliases" in gql(many)["errors"][0]["message"].lower()
    huge = "{ " + " ".join(f"a{i}: __typename" for i in range(1500)) + " }"
    assert "token" in gql(huge)["errors"][0]["message"].lower()


def test_circular_introspection_is_refused_in_production(production: TestClient) -> None:
    # Our own schema has no cycles (its depth is bounded); the only cycles are the
    # introspection types, which production refuses outright.
    inner = "name"
    for _ in range(12):
        inner = f"ofType {{ {inner} }}"
    query = f"{{ __schema {{ types {{ fields {{ type {{ {inner} }} }} }} }} }}"
    body = GraphQLClient(production)(query)
    assert body["data"] is None
    assert "introspection" in body["errors"][0]["message"].lower()


def test_internal_errors_are_masked_with_a_request_id(
    gql: GraphQLClient, owner: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.orders.service import OrderService

    def explode(*_: object, **__: object) -> None:
        raise RuntimeError("SELECT secret FROM orders WHERE code='ABCD' /app/orders/service.py")

    monkeypatch.setattr(OrderService, "list_orders", explode)
    body = gql("{ myOrders { edges { cursor } } }", token=owner.token)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "INTERNAL"
    assert error["extensions"]["requestId"]
    assert "SELECT" not in str(body) and "service.py" not in str(body)


def test_development_serves_graphiql_and_introspection(
    http: TestClient, gql: GraphQLClient
) -> None:
    page = http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert gql("{ __schema { queryType { name } } }")["data"]["__schema"]


def test_production_serves_no_ide_and_no_introspection(production: TestClient) -> None:
    page = production.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code in (404, 405)
    assert "graphiql" not in page.text.lower()
    body = GraphQLClient(production)("{ __schema { queryType { name } } }")
    assert body["errors"] and "introspection" in body["errors"][0]["message"].lower()
    typename = GraphQLClient(production)("{ __typename }")
    assert typename["data"] == {"__typename": "Query"}


def test_production_refuses_default_or_short_secrets_and_debug() -> None:
    with pytest.raises(SettingsError):
        Settings(app_env="production", jwt_secret=DEV_JWT_SECRET).validate()
    with pytest.raises(SettingsError):
        Settings(app_env="production", jwt_secret="short").validate()
    carrier = "c" * 48  # production refuses the default carrier secret too
    real = Settings(app_env="production", jwt_secret="s" * 48, carrier_webhook_secret=carrier)
    with pytest.raises(SettingsError, match="DEBUG"):
        replace(real, debug=True).validate()
    real.validate()  # real secrets


def database_rows(services: Services) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (what a mutation could have changed)."""
    with db_session(services) as session:
        tables = inspect(session.get_bind()).get_table_names()
        return {
            table: [tuple(row) for row in session.execute(text(f"SELECT * FROM {table}"))]
            for table in sorted(tables)
        }


def test_unauthenticated_mutation_changes_nothing(
    gql: GraphQLClient, services: Services, owner: Account, place_order: Callable[..., OrderView]
) -> None:
    # given an order and its owner's live session
    view = place_order(owner)
    before = database_rows(services)
    assert before["orders"] and before["auth_sessions"]
    # when anonymous callers try the mutations that would change them
    for mutation, variables in (
        ("mutation { logout { ok } }", {}),
        (
            "mutation C($code: String!) { cancelOrder(code: $code) { order { status } } }",
            {"code": view.order.code},
        ),
    ):
        # then each is refused as unauthenticated
        assert error_codes(gql(mutation, variables)) == ["UNAUTHENTICATED"], mutation
    # and not one row of any table changed
    assert database_rows(services) == before


def test_syntax_and_token_limit_errors_carry_a_code(gql: GraphQLClient) -> None:
    assert error_codes(gql("{ a b c")) == ["BAD_USER_INPUT"]
    huge = "{ " + " ".join(f"a{i}: __typename" for i in range(1500)) + " }"
    assert error_codes(gql(huge)) == ["BAD_USER_INPUT"]


def test_a_request_that_runs_too_long_is_stopped_cleanly(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from app.main import OrdersGraphQL

    slow_settings = replace(settings, request_timeout_seconds=0.3)
    original = OrdersGraphQL.process_result

    async def slow(self: OrdersGraphQL, request: object, result: object) -> object:
        await asyncio.sleep(2)
        return await original(self, request, result)  # type: ignore[arg-type]

    monkeypatch.setattr(OrdersGraphQL, "process_result", slow)
    services = build_services(slow_settings, passwords=FAST_PASSWORDS)
    with TestClient(create_app(slow_settings, run_sender=False, services=services)) as client:
        response = client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
