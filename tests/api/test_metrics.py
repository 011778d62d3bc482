"""/metrics: operations by outcome, code lookups by outcome, rate-limit rejections, webhook
deliveries, latency, outbox depth and age; open in development, token-only in production."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app.main import create_app
from app.orders.service import OrderView
from app.security import codes
from app.settings import Settings
from tests.conftest import PASSWORD, Account, GraphQLClient, error_codes, with_limits

ORDER = "query Order($code: String!) { order(code: $code) { code } }"
LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { tokens { accessToken } }
}
"""


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def lookups(outcome: str) -> float:
    return sample("orders_api_code_lookups_total", outcome=outcome)


def scrape(http: TestClient, **headers: str) -> dict[str, float]:
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        s.name: s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if not s.labels
    }


@contextmanager
def logged_in(
    settings: Settings, owner: Account, **limits: str
) -> Iterator[tuple[GraphQLClient, str]]:
    """An app of its own with these budgets, and the owner's token from a real login on it."""
    app = create_app(with_limits(settings, **limits), run_sender=False)
    with TestClient(app, client=("10.0.0.9", 50000)) as http:
        client = GraphQLClient(http)
        login = client.data(LOGIN, {"email": owner.email, "password": PASSWORD})
        yield client, login["login"]["tokens"]["accessToken"]


def test_code_lookups_are_counted_by_outcome(
    gql: GraphQLClient, owner: Account, place_order: Callable[..., OrderView]
) -> None:
    # given an owner with one order, and the counters as they stand
    code = place_order(owner).order.code
    before = {o: lookups(o) for o in ("found", "not_found", "invalid")}
    requests_before = sample(
        "orders_api_graphql_requests_total", operation="order", outcome="ORDER_NOT_FOUND"
    )
    timed_before = sample("orders_api_graphql_duration_seconds_count", operation="order")
    # when they look up their order twice, an unknown code once and a malformed code once
    gql.data(ORDER, {"code": code}, token=owner.token)
    gql.data(ORDER, {"code": code}, token=owner.token)
    assert error_codes(gql(ORDER, {"code": codes.generate()}, token=owner.token)) == [
        "ORDER_NOT_FOUND"
    ]
    assert error_codes(gql(ORDER, {"code": "NOT-A-CODE"}, token=owner.token)) == [
        "INVALID_ORDER_CODE"
    ]
    # then each outcome moved by exactly its count
    assert lookups("found") - before["found"] == 2
    assert lookups("not_found") - before["not_found"] == 1
    assert lookups("invalid") - before["invalid"] == 1
    # and the operations were counted by root field and outcome, and timed
    assert (
        sample("orders_api_graphql_requests_total", operation="order", outcome="ORDER_NOT_FOUND")
        - requests_before
        == 1
    )
    assert (
        sample("orders_api_graphql_duration_seconds_count", operation="order") - timed_before == 4
    )


def test_rate_limited_lookups_and_rejections_are_counted(
    settings: Settings, services: object, owner: Account
) -> None:
    # given a budget of 2 lookups per minute
    with logged_in(settings, owner, lookups_per_user="2/minute") as (client, token):
        before = lookups("rate_limited")
        rejections = sample("orders_api_rate_limit_rejections_total", bucket="lookup:user")
        # when 5 lookups are tried
        answers = [
            error_codes(client(ORDER, {"code": codes.generate()}, token=token)) for _ in "12345"
        ]
    # then 3 were refused, and both counters say so
    assert answers.count(["RATE_LIMITED"]) == 3
    assert lookups("rate_limited") - before == 3
    assert sample("orders_api_rate_limit_rejections_total", bucket="lookup:user") - rejections == 3


def test_a_lookup_refused_after_the_read_is_counted_once_as_rate_limited(
    settings: Settings, services: object, owner: Account
) -> None:
    # given a ceiling of 2 failed lookups for the address (settled after the read: the
    # address's budgets never refuse a caller's own order, so they are not checked before)
    with logged_in(settings, owner, failed_lookups_per_ip="2/minute") as (client, token):
        before = {o: lookups(o) for o in ("found", "not_found", "rate_limited")}
        # when three unknown codes are looked up
        answers = [
            error_codes(client(ORDER, {"code": codes.generate()}, token=token)) for _ in "123"
        ]
    # then two were not found and the third refused, each counted once and none as found
    assert answers == [["ORDER_NOT_FOUND"], ["ORDER_NOT_FOUND"], ["RATE_LIMITED"]]
    moved = {o: lookups(o) - n for o, n in before.items()}
    assert moved == {"found": 0, "not_found": 2, "rate_limited": 1}


def test_outbox_depth_and_age_and_webhook_deliveries_are_exposed(
    http: TestClient, owner: Account, place_order: Callable[..., OrderView]
) -> None:
    # given an order whose confirmation email waits in the outbox (no sender runs here)
    place_order(owner)
    rejected = sample("orders_api_webhook_events_total", status="401")
    # when a carrier posts an unsigned event and /metrics is scraped
    response = http.post(
        "/webhooks/carrier", content=b"{}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401
    values = scrape(http)
    # then the outbox gauges show the waiting email and the webhook counter the refusal
    assert values["orders_api_outbox_depth"] >= 1
    assert values["orders_api_outbox_oldest_age_seconds"] >= 0
    assert sample("orders_api_webhook_events_total", status="401") - rejected == 1
    assert "orders_api_graphql_requests_total" in http.get("/metrics").text


def production(settings: Settings, token: str | None) -> Settings:
    return replace(
        settings,
        app_env="production",
        carrier_webhook_secret="carrier-" + "c" * 40,
        metrics_token=token,
    )


def test_production_hides_metrics_without_a_token(settings: Settings) -> None:
    # given production without METRICS_TOKEN, when /metrics is asked for, then it is absent
    with TestClient(create_app(production(settings, None), run_sender=False)) as http:
        assert http.get("/metrics").status_code == 404
        assert http.get("/metrics", headers={"authorization": "Bearer "}).status_code == 404


def test_production_serves_metrics_to_the_token_only(settings: Settings) -> None:
    # given production with METRICS_TOKEN set
    token = "metrics-" + "m" * 40
    with TestClient(create_app(production(settings, token), run_sender=False)) as http:
        # when asked without or with a wrong bearer, then 401; with the token, the metrics
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert "orders_api_outbox_depth" in scrape(http, authorization=f"Bearer {token}")
