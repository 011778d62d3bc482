"""GraphQL over HTTP (app/http.py, app/graphql/over_http.py): `Accept` negotiation, the
status and body of each kind of answer in application/json and in
application/graphql-response+json, refusals in the negotiated media type, the compiled
plans answering exactly like the general path in both, and the /metrics outcomes of
requests refused before execution (never `ok`, never client input in a label).

tests/e2e/test_js_clients.py runs the graphql-http audit and Apollo Client 4 against the
real server; these are the same rules, case by case, in process."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from app.catalog.service import CatalogService
from app.graphql import endpoint
from app.http import GRAPHQL_RESPONSE, JSON, negotiate
from app.main import create_app
from app.security import codes
from app.settings import Settings
from tests.conftest import FAST_PASSWORDS, Account, Run, with_limits

APOLLO_4 = "application/graphql-response+json,application/json;q=0.9"
ORDER = "query Order($code: String!) { order(code: $code) { code status } }"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),  # no Accept: a legacy client
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        ("application/json", JSON),
        ("application/json; charset=utf-8", JSON),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        ("Application/GraphQL-Response+JSON; charset=utf-8", GRAPHQL_RESPONSE),
        (APOLLO_4, GRAPHQL_RESPONSE),
        ("application/json;q=0.5, application/graphql-response+json", GRAPHQL_RESPONSE),
        (f"application/json, {GRAPHQL_RESPONSE}", JSON),  # equal q: the first listed
        (f"*/*, {GRAPHQL_RESPONSE};q=0.1", JSON),  # q decides before specificity
        (f"*/*;q=0.5, {GRAPHQL_RESPONSE};q=0.5", GRAPHQL_RESPONSE),  # then named beats */*
        ("text/html, */*;q=0.8", JSON),  # a browser's navigation Accept
        ("application/json;q=0, */*", GRAPHQL_RESPONSE),  # */* but not application/json
        ("text/html", None),
        ("application/xml, text/plain", None),
        ("application/json;q=0", None),
        ("application/json;q=zero", None),
    ],
)
def test_accept_negotiation(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


def post(
    http: TestClient,
    body: Any,
    accept: str | None,
    token: str | None = None,
    content_type: str = "application/json",
) -> tuple[int, str, dict[str, Any], Any]:
    headers = {"content-type": content_type}
    if accept is not None:
        headers["accept"] = accept
    if token:
        headers["authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = http.post("/graphql", content=content, headers=headers)
    return (
        response.status_code,
        response.headers["content-type"],
        dict(response.headers),
        response.json(),
    )


# (case, body, status in application/json, status in graphql-response+json, data in json)
REQUEST_ERRORS = [
    ("parse error", {"query": "{ me { email "}, 200, 400, True),
    ("validation error", {"query": "{ nosuchfield }"}, 200, 400, True),
    (
        "variable coercion error",
        {"query": "query Q($c: String!) { order(code: $c) { code } }", "variables": {}},
        200,
        400,
        True,
    ),
    ("no query", {}, 400, 400, False),
    ("variables not a map", {"query": "{ __typename }", "variables": "x"}, 400, 400, False),
    ("query not a string", {"query": {"a": 1}}, 400, 400, False),
    (
        "unknown operation",
        {"query": "query A { __typename }", "operationName": "B"},
        400,
        400,
        False,
    ),
    (
        "subscription over POST",
        {"query": 'subscription { orderUpdates(code: "X") { type } }'},
        400,
        400,
        False,
    ),
    ("a batch", [{"query": "{ __typename }"}], 400, 400, False),
]


@pytest.mark.parametrize(
    ("body", "legacy_status", "status", "legacy_data"),
    [case[1:] for case in REQUEST_ERRORS],
    ids=[case[0] for case in REQUEST_ERRORS],
)
def test_request_errors_by_media_type(
    http: TestClient, body: Any, legacy_status: int, status: int, legacy_data: bool
) -> None:
    # in graphql-response+json: 4xx, no `data`, every error with a code
    got, media, _, answer = post(http, body, APOLLO_4)
    assert (got, media) == (status, GRAPHQL_RESPONSE), answer
    assert "data" not in answer
    assert answer["errors"] and all(e["extensions"]["code"] for e in answer["errors"])
    # in application/json (and with no Accept): what legacy clients had, JSON all the same
    for accept in ("application/json", None, "*/*"):
        got, media, _, answer = post(http, body, accept)
        assert (got, media) == (legacy_status, JSON), (accept, answer)
        assert ("data" in answer) is legacy_data and answer.get("data") is None
        assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_answers_with_data_are_200_in_both_media_types(http: TestClient, owner: Account) -> None:
    for accept in (APOLLO_4, "application/json", None):
        # a plain answer, and an answer with a field error (data present, order null)
        assert post(http, {"query": "{ __typename }"}, accept)[0::3] == (
            200,
            {"data": {"__typename": "Query"}},
        )
        status, media, _, answer = post(
            http, {"query": ORDER, "variables": {"code": codes.generate()}}, accept, owner.token
        )
        assert status == 200 and media == (GRAPHQL_RESPONSE if accept == APOLLO_4 else JSON)
        assert answer["data"] == {"order": None}
        assert answer["errors"][0]["extensions"]["code"] == "ORDER_NOT_FOUND"


@pytest.mark.parametrize("accept", [APOLLO_4, "application/json"])
def test_refusals_at_the_door_are_graphql_responses_in_the_negotiated_type(
    http: TestClient, accept: str
) -> None:
    media = GRAPHQL_RESPONSE if accept == APOLLO_4 else JSON
    refusals = {
        415: post(http, b'{"query": "{ __typename }"}', accept, content_type="text/plain"),
        413: post(http, b'{"query": "' + b" " * 70_000 + b'"}', accept),
        400: post(http, b'{"query": ', accept),
    }
    for status, (got, content_type, _, answer) in refusals.items():
        assert (got, content_type) == (status, media), answer
        assert "data" not in answer and answer["errors"][0]["extensions"]["code"]
    # GET is refused (405, Allow: POST) in the negotiated type too
    response = http.get("/graphql", params={"query": "{ __typename }"}, headers={"accept": accept})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.headers["content-type"] == media


def test_accept_without_a_graphql_media_type_is_406(http: TestClient) -> None:
    for accept in ("text/html", "application/xml", "application/json;q=0"):
        status, media, headers, answer = post(http, {"query": "{ __typename }"}, accept)
        assert (status, media) == (406, JSON)
        assert "Accept" in headers["vary"]
        assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "data" not in answer


def test_a_whole_request_rate_limit_is_429_in_both_types(
    settings: Settings, services: object, owner: Account
) -> None:
    limited = with_limits(settings, lookups_per_user="1/minute")
    with TestClient(create_app(limited, run_sender=False)) as http:
        body = {"query": ORDER, "variables": {"code": codes.generate()}}
        assert post(http, body, APOLLO_4, owner.token)[0] == 200  # the one lookup allowed
        status, media, headers, answer = post(http, body, APOLLO_4, owner.token)
        # graphql-response+json: 429, no data (the spec wants 2xx whenever data is present)
        assert (status, media) == (429, GRAPHQL_RESPONSE)
        assert "data" not in answer
        [error] = answer["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] == int(headers["retry-after"]) > 0
        assert headers["ratelimit"].startswith("remaining=0")
        # application/json: 429 with the null field, as before
        status, media, headers, answer = post(http, body, "application/json", owner.token)
        assert (status, media) == (429, JSON)
        assert answer["data"] == {"order": None}
        assert answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


def test_persisted_query_errors_by_media_type(settings: Settings) -> None:
    unknown = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "a" * 64}}}
    with TestClient(create_app(settings, run_sender=False)) as http:
        status, media, _, answer = post(http, unknown, APOLLO_4)
        assert (status, media) == (400, GRAPHQL_RESPONSE)
        assert answer == {
            "errors": [
                {"message": "PersistedQueryNotFound", "extensions": {"code": "BAD_USER_INPUT"}}
            ]
        }
        assert post(http, unknown, "application/json")[0::3] == (200, answer)
    allowlist = replace(settings, persisted_queries="allowlist")
    text = "query NotListed { __typename }"
    with TestClient(create_app(allowlist, run_sender=False)) as http:
        # registering a document is refused (403: not permitted), so is sending its text
        from app.graphql.persisted import sha256_hex

        register: dict[str, Any] = {
            "query": text,
            "extensions": {"persistedQuery": {"version": 1}},
        }
        register["extensions"]["persistedQuery"]["sha256Hash"] = sha256_hex(text)
        for body in (register, {"query": text}):
            status, media, _, answer = post(http, body, APOLLO_4)
            assert (status, media) == (403, GRAPHQL_RESPONSE), answer
            assert [e["extensions"]["code"] for e in answer["errors"]] == ["FORBIDDEN"]
            assert "data" not in answer


# -- compiled plans and the general path negotiate alike -------------------------------


def key(operation: str, outcome: str) -> str:
    labels = sorted({"operation": operation, "outcome": outcome}.items())
    return f"orders_api_graphql_requests_total{labels}"


def _requests_counted() -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for metric in REGISTRY.collect()
        if metric.name == "orders_api_graphql_requests"
        for s in metric.samples
        if s.name.endswith("_total")
    }


def test_compiled_plans_answer_like_the_general_path_in_both_media_types(
    settings: Settings,
    services: object,
    owner: Account,
    place_order: Any,
    monkeypatch: pytest.MonkeyPatch,
    run: Run[Any],
    http: TestClient,
) -> None:
    code = place_order(owner).order.code
    limited = with_limits(settings, lookups_per_user="2/minute")
    app = create_app(limited, run_sender=False)
    limiter = app.state.services.limiter
    route_app = next(r for r in app.routes if getattr(r, "path", "") == "/graphql").app  # type: ignore[attr-defined]
    bodies: list[dict[str, Any]] = [
        {"query": ORDER, "variables": {"code": code}},  # found
        {"query": ORDER, "variables": {"code": codes.generate()}},  # not found
    ]
    plans = [endpoint._plan_for(route_app.schema, b["query"], None) for b in bodies]
    assert all(plan is not None for plan in plans)  # the plan path is what is compared

    def exchange(http: TestClient, body: dict[str, Any], accept: str) -> list[Any]:
        before = _requests_counted()
        answers = [post(http, body, accept, owner.token) for _ in range(3)]  # 3rd: 429
        after = _requests_counted()
        counted = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
        return [(s, m, h.get("retry-after"), a) for s, m, h, a in answers] + [counted]

    with TestClient(app) as limited_http:
        for body in bodies:
            for accept in (APOLLO_4, "application/json"):
                limited_http.portal.call(limiter.reset)  # type: ignore[union-attr]
                served = exchange(limited_http, body, accept)
                with monkeypatch.context() as patch:
                    patch.setattr(endpoint, "_plan_for", lambda *_: None)
                    limited_http.portal.call(limiter.reset)  # type: ignore[union-attr]
                    general = exchange(limited_http, body, accept)
                assert served == general
                assert [answer[0] for answer in served[:3]] == [200, 200, 429]


# -- /metrics: requests refused before execution are never `ok` ------------------------

MARK = "zq7client"  # client input that must never become a label value

REFUSED = [
    ({"query": "{ me { " + MARK}, None, ("invalid", "GRAPHQL_PARSE_FAILED")),
    ({"query": "{ " + MARK + " }"}, None, ("other", "GRAPHQL_VALIDATION_FAILED")),
    (
        {"query": f"query {MARK}($c: String!) {{ order(code: $c) {{ code }} }}", "variables": {}},
        None,
        ("order", "BAD_USER_INPUT"),  # variable coercion
    ),
    ({}, None, ("invalid", "BAD_REQUEST")),
    ({"query": "{ __typename }", "variables": MARK}, None, ("invalid", "BAD_REQUEST")),
    ({"query": "{ __typename }", "operationName": MARK}, None, ("invalid", "BAD_REQUEST")),
    ({"query": f'subscription {{ orderUpdates(code: "{MARK}") {{ type }} }}'}, None,
     ("orderUpdates", "BAD_REQUEST")),
    ([{"query": "{ __typename }"}], None, ("invalid", "BAD_REQUEST")),
    (b'{"query": "' + MARK.encode(), None, ("invalid", "BAD_REQUEST")),  # not JSON
    ({"query": "{ __typename }"}, "text/html", ("invalid", "BAD_REQUEST")),  # 406
    (b'{"query": "' + b" " * 70_000 + b'"}', None, ("invalid", "BAD_REQUEST")),  # 413
]  # fmt: skip


@pytest.mark.parametrize(("body", "accept", "expected"), REFUSED)
def test_refused_requests_are_counted_once_by_why_never_ok(
    http: TestClient, body: Any, accept: str | None, expected: tuple[str, str]
) -> None:
    for media in (accept, APOLLO_4) if accept is None else (accept,):
        before = _requests_counted()
        status = post(http, body, media)[0]
        after = _requests_counted()
        counted = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
        operation, outcome = expected
        assert status >= 400 or media is None  # legacy: parse/validation/coercion stay 200
        assert counted == {key(operation, outcome): 1.0}, (media, counted)
    assert MARK not in http.get("/metrics").text


def test_an_operation_stopped_by_the_time_cap_is_counted_service_unavailable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def slow(*_: Any, **__: Any) -> Any:
        await asyncio.sleep(2)

    monkeypatch.setattr(CatalogService, "list_products", slow)
    capped = replace(settings, request_timeout_seconds=0.3)
    from app.container import build_services

    services = build_services(capped, passwords=FAST_PASSWORDS)
    with TestClient(create_app(capped, run_sender=False, services=services)) as http:
        before = _requests_counted()
        status, media, _, answer = post(
            http, {"query": "{ products { edges { cursor } } }"}, APOLLO_4
        )
        after = _requests_counted()
    assert (status, media) == (503, GRAPHQL_RESPONSE)
    assert answer["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    counted = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
    assert counted == {key("products", "SERVICE_UNAVAILABLE"): 1.0}
