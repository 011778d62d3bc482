"""Compiled plans (app/graphql/compiled.py) answer exactly like the general path.

Each request is sent twice through the real ASGI app: once as it is served (a plan where
the document has one) and once with plans switched off (graphql-core and strawberry's
extensions), with the limiter reset in between. Status, body and the metrics they count
must be the same, for every caller and every kind of code."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import strawberry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from app.container import Services
from app.graphql import endpoint
from app.graphql.compiled import compile_plan
from app.graphql.errors import mask_error
from app.orders.inputs import LineInput
from app.orders.service import OrderView
from app.schema import parse_document
from app.security.codes import display, generate
from app.security.roles import Role
from tests.conftest import ADDRESS, Account, Run

ORDER_FIELDS = [
    "code",
    "status",
    "placedAt",
    "updatedAt",
    "cancelledAt",
    "estimatedDelivery",
    "subtotal { amount currency }",
    "shipping { amount currency }",
    "tax { amount }",
    "total { amount currency }",
    "refunded { amount currency }",
    "shippingAddress { name line1 line2 city postalCode country }",
    "payment { brand last4 }",
    "__typename",
]

COMPILED = [
    "query($code: String!) { order(code: $code) { code status total { amount currency } } }",
    f"query Lookup($code: String!) {{ order(code: $code) {{ {' '.join(ORDER_FIELDS)} }} }}",
    "query($code: String!) { mine: order(code: $code) { ref: code s: status } me { email role } }",
    "query($code: String!) { order(code: $code) { code } "
    "checkout(code: $code) { code total { amount } } }",
    "{ me { email name role createdAt __typename } }",
]
GENERAL = [
    # fragments, directives, list fields with loaders and non-vetted roots take the general path
    "query($code: String!) { order(code: $code) { ...F } } fragment F on Order { code }",
    "query($code: String!, $x: Boolean!) { order(code: $code) { code @include(if: $x) } }",
    "query($code: String!) { order(code: $code) { code lines { sku quantity } } }",
    "query { products(first: 2) { edges { node { sku } } } }",
    "mutation($code: String!) { cancelOrder(code: $code) { userErrors { code } } }",
]


@pytest.fixture
def cast(
    services: Services, make_account: Callable[..., Account], run: Run[Any]
) -> dict[str, Account | None]:
    owner = make_account(Role.CUSTOMER)
    logged_out = make_account(Role.CUSTOMER)
    run(services.accounts.logout(logged_out.viewer))
    return {
        "anonymous": None,
        "owner": owner,
        "other": make_account(Role.CUSTOMER),
        "support": make_account(Role.SUPPORT),
        "warehouse": make_account(Role.WAREHOUSE),
        "admin": make_account(Role.ADMIN),
        "forged token": replace(owner, token=owner.token[:-4] + "AAAA"),
        "logged out": logged_out,
    }


@pytest.fixture
def code_of(
    services: Services, cast: dict[str, Any], place_order: Callable[..., OrderView], run: Run[Any]
) -> dict[str, str]:
    owner = cast["owner"]
    placed = place_order(owner)
    cancelled = place_order(owner)
    run(services.orders.cancel_order(owner.viewer, cancelled.order.code, "10.0.0.1"))
    checkout = run(services.checkouts.start(owner.viewer, [LineInput("MUG-001", 1)], ADDRESS))
    others = place_order(cast["other"])
    return {
        "owned": placed.order.code,
        "owned-lowercase-spaced": " " + placed.order.code.lower().replace("-", " ") + " ",
        "cancelled": cancelled.order.code,
        "checkout": checkout.checkout.code,
        "another customer's": others.order.code,
        "unknown": generate(),  # well-formed, nobody's
        "malformed": "NOT-A-CODE",
        "empty": "",
    }


@pytest.fixture
def both_paths(
    http: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch, run: Run[Any]
) -> Callable[..., tuple[Any, Any]]:
    """(served, general): the same request with plans on, then with plans off."""

    def send(body: dict[str, Any], account: Account | None) -> tuple[int, Any, dict[str, float]]:
        headers = {"content-type": "application/json"}
        if account is not None:
            headers["authorization"] = f"Bearer {account.token}"
        before = _request_metrics()
        response = http.post("/graphql", content=json.dumps(body), headers=headers)
        after = _request_metrics()
        counted = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k)}
        is_json = response.headers.get("content-type", "").startswith("application/json")
        return response.status_code, response.json() if is_json else response.text, counted

    def both_paths(body: dict[str, Any], account: Account | None) -> tuple[Any, Any]:
        run(services.limiter.reset())
        served = send(body, account)
        with monkeypatch.context() as patch:
            patch.setattr(endpoint, "_plan_for", lambda *_: None)
            run(services.limiter.reset())
            general = send(body, account)
        return served, general

    return both_paths


def _request_metrics() -> dict[str, float]:
    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for metric in REGISTRY.collect()
        if metric.name in ("orders_api_graphql_requests", "orders_api_code_lookups")
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def _schema(http: TestClient) -> Any:
    route = next(r for r in http.app.routes if getattr(r, "path", "") == "/graphql")  # type: ignore[attr-defined]
    return route.app.schema


def test_the_documents_meant_to_compile_do_and_the_others_do_not(http: TestClient) -> None:
    schema = _schema(http)
    for query in COMPILED:
        assert compile_plan(schema, parse_document(query), None) is not None, query
    for query in GENERAL:
        assert compile_plan(schema, parse_document(query), None) is None, query


@pytest.mark.parametrize("query", COMPILED + GENERAL[:3])
def test_every_caller_and_every_code_gets_the_same_answer_from_both_paths(
    query: str,
    cast: dict[str, Account | None],
    code_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
) -> None:
    answers = 0
    for caller, account in cast.items():
        for kind, code in code_of.items():
            body = {"query": query, "variables": {"code": code, "x": True}}
            served, general = both_paths(body, account)
            assert served == general, (caller, kind)
            answers += 1
    assert answers == len(cast) * len(code_of)


def test_the_owner_really_gets_data_and_the_rest_the_documented_errors(
    cast: dict[str, Account | None],
    code_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
) -> None:
    """Guards the comparison above against two paths that are wrong the same way."""
    query = COMPILED[0]
    (status, body, counted), _ = both_paths(
        {"query": query, "variables": {"code": code_of["owned-lowercase-spaced"]}}, cast["owner"]
    )
    assert status == 200 and body["data"]["order"]["code"] == display(code_of["owned"])
    assert body["data"]["order"]["status"] == "PLACED"
    assert any("outcome', 'found'" in key for key in counted), counted
    expected = {
        ("anonymous", "owned"): "UNAUTHENTICATED",
        ("other", "owned"): "ORDER_NOT_FOUND",
        ("support", "owned"): "ORDER_NOT_FOUND",
        ("owner", "another customer's"): "ORDER_NOT_FOUND",
        ("owner", "unknown"): "ORDER_NOT_FOUND",
        ("owner", "malformed"): "INVALID_ORDER_CODE",
    }
    for (caller, kind), code in expected.items():
        (_, body, _), _ = both_paths(
            {"query": query, "variables": {"code": code_of[kind]}}, cast[caller]
        )
        assert body["data"] == {"order": None}, (caller, kind)
        assert [e["extensions"]["code"] for e in body["errors"]] == [code], (caller, kind)
        assert body["errors"][0]["path"] == ["order"]
        assert body["errors"][0]["locations"] == [{"line": 1, "column": 25}]


@pytest.mark.parametrize(
    "body",
    [
        {"query": COMPILED[0], "variables": {"code": 5}},
        {"query": COMPILED[0], "variables": {}},
        {"query": COMPILED[0]},
        {"query": COMPILED[0], "variables": {"code": "X"}, "operationName": "Nope"},
        {"query": COMPILED[1], "variables": {"code": "X"}, "operationName": "Lookup"},
        {"query": "{ order(code: 7) { code } }"},
        {"query": '{ order(code: "ABCD") { code nope } }'},
    ],
)
def test_bad_variables_and_operation_names_get_the_general_paths_answer(
    body: dict[str, Any], cast: dict[str, Account | None], both_paths: Callable[..., Any]
) -> None:
    served, general = both_paths(body, cast["owner"])
    assert served == general
    status, answer, _ = served
    assert status == 400 or answer.get("errors"), served


def test_a_rate_limited_caller_gets_429_with_retry_after_from_both_paths(
    http: TestClient,
    services: Services,
    cast: dict[str, Account | None],
    code_of: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    run: Run[Any],
) -> None:
    owner = cast["owner"]
    assert owner is not None
    headers = {"content-type": "application/json", "authorization": f"Bearer {owner.token}"}
    body = {"query": COMPILED[0], "variables": {"code": code_of["owned"]}}
    answers = []
    for plans in (True, False):
        run(services.limiter.reset())
        with monkeypatch.context() as patch:
            if not plans:
                patch.setattr(endpoint, "_plan_for", lambda *_: None)
            statuses = [http.post("/graphql", json=body, headers=headers) for _ in range(61)]
        last = statuses[-1]
        assert [r.status_code for r in statuses[:60]] == [200] * 60
        assert last.status_code == 429 and int(last.headers["retry-after"]) > 0
        answers.append((last.json(), last.headers["ratelimit"]))
    assert answers[0] == answers[1]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    fields=st.lists(st.sampled_from(ORDER_FIELDS), min_size=1, max_size=6),
    alias=st.sampled_from(["", "a: ", "order: ", "x1: "]),
    caller=st.sampled_from(["owner", "other", "anonymous", "admin"]),
    kind=st.sampled_from(["owned", "cancelled", "unknown", "malformed", "another customer's"]),
)
def test_any_selection_of_order_fields_gets_the_same_answer_from_both_paths(
    fields: list[str],
    alias: str,
    caller: str,
    kind: str,
    cast: dict[str, Account | None],
    code_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
) -> None:
    query = f"query($code: String!) {{ {alias}order(code: $code) {{ {' '.join(fields)} }} }}"
    served, general = both_paths(
        {"query": query, "variables": {"code": code_of[kind]}}, cast[caller]
    )
    assert served == general


# -- error semantics on a small schema of its own ------------------------------------------


@strawberry.type
class Inner:
    @strawberry.field
    def fine(self) -> str:
        return "fine"

    @strawberry.field
    def broken(self) -> str:
        raise ValueError("boom")

    @strawberry.field
    def missing(self) -> str:
        return None  # type: ignore[return-value]

    @strawberry.field
    def maybe_missing(self) -> str | None:
        raise ValueError("boom")

    @strawberry.field
    def items(self) -> list[int | None]:
        return [1, "x", 3]  # type: ignore[list-item]


@strawberry.type
class Thing:
    @strawberry.field
    def name(self) -> str:
        return "thing"

    @strawberry.field
    def inner(self) -> Inner:
        return Inner()

    @strawberry.field
    def required_inner(self) -> Inner:
        return Inner()


@strawberry.type
class SmallQuery:
    @strawberry.field
    def order(self, info: strawberry.Info, code: str) -> Thing | None:
        if code == "raise":
            raise ValueError("root failed")
        return Thing()


@pytest.fixture(scope="module")
def small_schema() -> Iterator[strawberry.Schema]:
    yield strawberry.Schema(query=SmallQuery)


@pytest.mark.parametrize(
    "selection",
    [
        "name inner { fine }",
        "name inner { broken }",
        "name inner { fine missing }",
        "inner { maybeMissing fine }",
        "inner { items }",
        "requiredInner { broken } name",
        "name",
    ],
)
@pytest.mark.parametrize("code", ["ok", "raise"])
def test_errors_and_null_propagation_match_graphql_core(
    small_schema: strawberry.Schema, selection: str, code: str
) -> None:
    query = f"query($c: String!) {{ order(code: $c) {{ {selection} }} }}"
    document = parse_document(query)
    plan = compile_plan(small_schema, document, None)
    assert plan is not None
    compiled = asyncio.run(plan.run(None, {"c": code}, "rid"))
    reference = small_schema.execute_sync(query, variable_values={"c": code})
    assert compiled is not None
    assert compiled["data"] == reference.data
    # masked as the app masks the general path's errors: same messages, paths, locations
    expected = [mask_error(error, "rid").formatted for error in reference.errors or []]
    assert compiled.get("errors", []) == expected
    assert bool(expected) == (
        code == "raise"
        or "missing" in selection
        or "roken" in selection
        or "items" in selection
        or "maybe" in selection
    )
