"""Compiled plans (app/graphql/compiled.py) answer exactly like the general path.

Each request is sent twice through the real ASGI app: once as it is served (a plan where
the document has one) and once with plans switched off (graphql-core and strawberry's
extensions), with the limiter reset in between. Status, body and the metrics they count
must be the same, for every caller and every kind of code, below every vetted root field
(VETTED_ROOT_FIELDS: `order`, `checkout`, `returnRequest`, `me`); a newly vetted root
field fails `test_every_vetted_root_field_is_compared_on_both_paths` until it is compared."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import strawberry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from sqlalchemy import update
from starlette.testclient import TestClient

from app.container import Services, build_services
from app.db import utcnow
from app.graphql import endpoint
from app.graphql.compiled import VETTED_ROOT_FIELDS, compile_plan
from app.graphql.errors import mask_error
from app.main import create_app
from app.orders.inputs import LineInput
from app.orders.models import Checkout
from app.orders.service import OrderService, OrderView
from app.pagination import CursorCodec
from app.schema import parse_document
from app.schema import schema as app_schema
from app.security import ratelimit
from app.security.codes import display, generate
from app.security.roles import Role
from app.settings import Settings
from tests.conftest import ADDRESS, FAST_PASSWORDS, Account, Run, db_session
from tests.support.actors import Cast
from tests.support.returns import IP, approve, deliver, receive, request

ORDER_FIELDS = [
    "code",
    "status",
    "placedAt",
    "updatedAt",
    "cancelledAt",
    "estimatedDelivery",
    "promisedDelivery",
    "deliveredAt",
    "deliveredOnTime",
    "subtotal { amount currency }",
    "shipping { amount currency }",
    "tax { amount }",
    "total { amount currency }",
    "refunded { amount currency }",
    "shippingAddress { name line1 line2 city postalCode country }",
    "payment { brand last4 }",
    "__typename",
]

CHECKOUT_FIELDS = [
    "code",
    "status",
    "lines { sku name quantity unitPrice { amount currency } lineTotal { amount } available"
    " inStock }",
    "subtotal { amount currency }",
    "shipping { amount currency }",
    "tax { amount }",
    "total { amount currency }",
    "estimatedDelivery",
    "shippingAddress { name line1 line2 city postalCode country }",
    "expiresAt",
    "__typename",
]

RETURN_FIELDS = [
    "rma",
    "orderCode",
    "status",
    "reason",
    "comment",
    "rejectionReason",
    "refund { amount currency }",
    "requestedAt",
    "approvedAt",
    "rejectedAt",
    "receivedAt",
    "refundedAt",
    "__typename",
]

# the order page: what app/orders/types.py offers an owner, loader fields included
PAGE_FIELDS = [
    *ORDER_FIELDS,
    "lines { sku name quantity unitPrice { amount currency } lineTotal { amount currency } }",
    "shipments { carrier trackingNumber status estimatedDelivery shippedAt deliveredAt"
    " events { status location description occurredAt } lines { sku name quantity } }",
    "returns { rma status reason requestedAt refund { amount currency }"
    " lines { sku name quantity receivedQuantity unitPrice { amount currency } } }",
    "timeline { kind at description amount { amount currency } rma carrier trackingNumber }",
]
HISTORY_SELECTION = (
    "edges { cursor node { code status placedAt total { amount currency }"
    " promisedDelivery deliveredAt lines { sku name quantity }"
    " shipments { carrier status estimatedDelivery deliveredAt"
    " events { status } } returns { rma lines { sku } } } }"
    " pageInfo { hasNextPage endCursor }"
)

COMPILED = [
    "query($code: String!) { order(code: $code) { code status total { amount currency } } }",
    f"query Lookup($code: String!) {{ order(code: $code) {{ {' '.join(ORDER_FIELDS)} }} }}",
    "query($code: String!) { mine: order(code: $code) { ref: code s: status } me { email role } }",
    "query($code: String!) { order(code: $code) { code } "
    "checkout(code: $code) { code total { amount } } }",
    "{ me { email name role createdAt __typename } }",
    # loader fields (async resolvers taking `info`), batched in lockstep
    "query($code: String!) { order(code: $code) { code lines { sku quantity } } }",
    "query($code: String!) { order(code: $code) { timeline { kind at rma } code } }",
    f"query Checkout($code: String!) {{ checkout(code: $code) {{ {' '.join(CHECKOUT_FIELDS)} }} }}",
]
# returnRequest(rma), sent for every caller and every kind of RMA (`rma_of`)
RETURN_COMPILED = [
    "query($rma: String!) { returnRequest(rma: $rma) { rma status orderCode } }",
    f"query Return($rma: String!) {{ returnRequest(rma: $rma) {{ {' '.join(RETURN_FIELDS)} }} }}",
    "query($rma: String!) { me { email } r: returnRequest(rma: $rma) { rma refund { amount } } }",
    "query($rma: String!) { returnRequest(rma: $rma) { rma lines { sku quantity } } }",
    # the order page and the history page (as scripts/bench sends them): "an order's code"
    # is the owner's delivered order with four returns
    f"query Page($rma: String!) {{ order(code: $rma) {{ {' '.join(PAGE_FIELDS)} }} }}",
    f"query History {{ myOrders(first: 20) {{ {HISTORY_SELECTION} }} }}",
    f"query Small {{ myOrders(first: 2) {{ {HISTORY_SELECTION} }} }}",
]
GENERAL = [
    # fragments, directives, list fields with loaders and non-vetted roots take the general path
    "query($code: String!) { order(code: $code) { ...F } } fragment F on Order { code }",
    "query($code: String!, $x: Boolean!) { order(code: $code) { code @include(if: $x) } }",
    "query { products(first: 2) { edges { node { sku } } } }",
    "mutation($code: String!) { cancelOrder(code: $code) { userErrors { code } } }",
    # a field below the root with arguments; a non-null root beside another root
    "{ me { email } myOrders(first: 2) { edges { cursor } } }",
    '{ myOrders(filter: { text: "mug" }) { edges { cursor } } }',
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
    others_checkout = _checkout(run, services, cast["other"])
    placed_checkout = _checkout(run, services, owner)
    run(services.checkouts.place(owner.viewer, placed_checkout, "10.0.0.1", "tok_visa"))
    expired_checkout = _checkout(run, services, owner)
    with db_session(services) as session:
        session.execute(
            update(Checkout)
            .where(Checkout.code == expired_checkout)  # type: ignore[arg-type]
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    return {
        "owned": placed.order.code,
        "owned-lowercase-spaced": " " + placed.order.code.lower().replace("-", " ") + " ",
        "cancelled": cancelled.order.code,
        "checkout": checkout.checkout.code,
        "placed checkout": placed_checkout,  # also the code of the order it became
        "expired checkout": expired_checkout,
        "another customer's checkout": others_checkout,
        "another customer's": others.order.code,
        "unknown": generate(),  # well-formed, nobody's
        "malformed": "NOT-A-CODE",
        "empty": "",
    }


def _checkout(run: Run[Any], services: Services, account: Account) -> str:
    started = run(services.checkouts.start(account.viewer, [LineInput("MUG-001", 1)], ADDRESS))
    code: str = started.checkout.code
    return code


@pytest.fixture
def rma_of(
    services: Services,
    cast: dict[str, Any],
    place_order: Callable[..., OrderView],
    run: Run[Any],
) -> dict[str, str]:
    """RMAs of the owner's returns in four states and of another customer's return, and
    codes that are no RMA. Staff (SUPPORT, WAREHOUSE, ADMIN) read any return."""
    staff = Cast(
        owner=cast["owner"],
        other_customer=cast["other"],
        support=cast["support"],
        warehouse=cast["warehouse"],
        admin=cast["admin"],
    )
    mugs = place_order(staff.owner, [("MUG-001", 4)])
    deliver(run, services, staff.warehouse, mugs)
    requested, approved, rejected, refunded = (
        request(run, services, staff.owner, mugs) for _ in range(4)
    )
    approve(run, services, staff, approved)
    run(services.returns.reject(staff.support.viewer, rejected.request.rma_code, IP, "Worn"))
    approve(run, services, staff, refunded)
    receive(run, services, staff, refunded)
    run(services.returns.refund(staff.admin.viewer, refunded.request.rma_code, IP))
    others_order = place_order(staff.other_customer, [("MUG-001", 1)])
    deliver(run, services, staff.warehouse, others_order)
    others = request(run, services, staff.other_customer, others_order)
    rma = requested.request.rma_code
    return {
        "requested": rma,
        "requested-lowercase-spaced": " " + display(rma).lower().replace("-", " ") + " ",
        "approved": approved.request.rma_code,
        "rejected": rejected.request.rma_code,
        "refunded": refunded.request.rma_code,
        "another customer's": others.request.rma_code,
        "an order's code": mugs.order.code,  # well-formed, but no RMA
        "unknown": generate(),
        "malformed": "NOT-A-CODE",
        "empty": "",
    }


@pytest.fixture
def both_paths(
    http: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch, run: Run[Any]
) -> Callable[..., tuple[Any, Any]]:
    """(served, general): the same request with plans on, then with plans off (cursors,
    sealed under a fresh nonce each time, compared opened)."""
    codec = CursorCodec(services.settings.jwt_secret)

    def send(body: dict[str, Any], account: Account | None) -> tuple[int, Any, dict[str, float]]:
        headers = {"content-type": "application/json"}
        if account is not None:
            headers["authorization"] = f"Bearer {account.token}"
        before = _request_metrics()
        response = http.post("/graphql", content=json.dumps(body), headers=headers)
        after = _request_metrics()
        counted = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k)}
        is_json = response.headers.get("content-type", "").startswith("application/json")
        answer = _opened_cursors(response.json(), codec) if is_json else response.text
        return response.status_code, answer, counted

    def both_paths(body: dict[str, Any], account: Account | None) -> tuple[Any, Any]:
        run(services.limiter.reset())
        served = send(body, account)
        with monkeypatch.context() as patch:
            patch.setattr(endpoint, "_plan_for", lambda *_: None)
            run(services.limiter.reset())
            general = send(body, account)
        return served, general

    return both_paths


def _opened_cursors(answer: Any, codec: CursorCodec) -> Any:
    if isinstance(answer, dict):
        return {
            key: codec.decode("order", value)
            if key in ("cursor", "endCursor") and isinstance(value, str)
            else _opened_cursors(value, codec)
            for key, value in answer.items()
        }
    if isinstance(answer, list):
        return [_opened_cursors(value, codec) for value in answer]
    return answer


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
    for query in RETURN_COMPILED:
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


@pytest.mark.parametrize("query", RETURN_COMPILED)
def test_every_caller_and_every_rma_gets_the_same_answer_from_both_paths(
    query: str,
    cast: dict[str, Account | None],
    rma_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
) -> None:
    answers = 0
    for caller, account in cast.items():
        for kind, rma in rma_of.items():
            served, general = both_paths({"query": query, "variables": {"rma": rma}}, account)
            assert served == general, (caller, kind)
            answers += 1
    assert answers == len(cast) * len(rma_of)


def _spy_on_plans(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, per request served with plans on, whether a plan answered it (so a guard
    below cannot pass on two general paths)."""
    found: list[bool] = []
    original = endpoint._plan_for

    def spy(*args: Any) -> Any:
        plan = original(*args)
        found.append(plan is not None)
        return plan

    monkeypatch.setattr(endpoint, "_plan_for", spy)
    return found


def test_returns_really_answer_their_owner_and_staff_and_the_rest_the_documented_errors(
    cast: dict[str, Account | None],
    rma_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards the returnRequest comparison against two paths that are wrong the same way."""
    query = RETURN_COMPILED[1]
    planned = _spy_on_plans(monkeypatch)
    read = {
        ("owner", "requested-lowercase-spaced"): ("requested", "REQUESTED"),
        ("owner", "refunded"): ("refunded", "REFUNDED"),
        ("owner", "rejected"): ("rejected", "REJECTED"),
        ("support", "another customer's"): ("another customer's", "REQUESTED"),
        ("warehouse", "approved"): ("approved", "APPROVED"),
        ("admin", "refunded"): ("refunded", "REFUNDED"),
    }
    for (caller, kind), (rma_kind, status) in read.items():
        (code, body, counted), _ = both_paths(
            {"query": query, "variables": {"rma": rma_of[kind]}}, cast[caller]
        )
        answer = body["data"]["returnRequest"]
        assert code == 200 and "errors" not in body, (caller, kind, body)
        assert answer["rma"] == display(rma_of[rma_kind]) and answer["status"] == status
        assert answer["__typename"] == "ReturnRequest"
        assert (answer["refund"] is not None) == (status == "REFUNDED"), answer
        assert any("outcome', 'found'" in key for key in counted), counted
    refused = {
        ("anonymous", "requested"): "UNAUTHENTICATED",
        ("forged token", "requested"): "UNAUTHENTICATED",
        ("logged out", "requested"): "UNAUTHENTICATED",
        ("other", "requested"): "ORDER_NOT_FOUND",
        ("owner", "another customer's"): "ORDER_NOT_FOUND",
        ("owner", "an order's code"): "ORDER_NOT_FOUND",
        ("admin", "unknown"): "ORDER_NOT_FOUND",
        ("owner", "malformed"): "INVALID_ORDER_CODE",
    }
    for (caller, kind), expected in refused.items():
        (_, body, _), _ = both_paths(
            {"query": query, "variables": {"rma": rma_of[kind]}}, cast[caller]
        )
        assert body["data"] == {"returnRequest": None}, (caller, kind)
        assert [e["extensions"]["code"] for e in body["errors"]] == [expected], (caller, kind)
        assert body["errors"][0]["path"] == ["returnRequest"]
    assert len(planned) == len(read) + len(refused) and all(planned)


def test_checkouts_really_answer_their_owner_and_the_rest_the_documented_errors(
    cast: dict[str, Account | None],
    code_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards the checkout comparison against two paths that are wrong the same way."""
    query = COMPILED[-1]
    planned = _spy_on_plans(monkeypatch)
    for kind, status in (("checkout", "OPEN"), ("placed checkout", "PLACED")):
        (code, body, _), _ = both_paths(
            {"query": query, "variables": {"code": code_of[kind]}}, cast["owner"]
        )
        checkout = body["data"]["checkout"]
        assert code == 200 and "errors" not in body, body
        assert checkout["code"] == display(code_of[kind]) and checkout["status"] == status
        assert [line["sku"] for line in checkout["lines"]] == ["MUG-001"]
    refused = {
        ("anonymous", "checkout"): "UNAUTHENTICATED",
        ("other", "checkout"): "ORDER_NOT_FOUND",
        ("admin", "checkout"): "ORDER_NOT_FOUND",
        ("owner", "expired checkout"): "ORDER_NOT_FOUND",
        ("owner", "another customer's checkout"): "ORDER_NOT_FOUND",
        ("owner", "owned"): "ORDER_NOT_FOUND",  # an order placed directly has no checkout
        ("owner", "malformed"): "INVALID_ORDER_CODE",
    }
    for (caller, kind), expected in refused.items():
        (_, body, _), _ = both_paths(
            {"query": query, "variables": {"code": code_of[kind]}}, cast[caller]
        )
        assert body["data"] == {"checkout": None}, (caller, kind)
        assert [e["extensions"]["code"] for e in body["errors"]] == [expected], (caller, kind)
    assert len(planned) == 2 + len(refused) and all(planned)


def test_the_order_and_history_pages_really_answer_with_loader_fields_from_a_plan(
    http: TestClient,
    services: Services,
    cast: dict[str, Account | None],
    rma_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards the page and history comparisons: the plan answers them (not the general
    path twice), with parcels, tracking events, returns and their lines, and a timeline."""
    page, history = RETURN_COMPILED[-3], RETURN_COMPILED[-2]
    planned = _spy_on_plans(monkeypatch)
    (status, body, _), _ = both_paths(
        {"query": page, "variables": {"rma": rma_of["an order's code"]}}, cast["owner"]
    )
    assert status == 200 and "errors" not in body, body
    order = body["data"]["order"]
    assert order["status"] == "PARTIALLY_RETURNED"
    assert [s["status"] for s in order["shipments"]] == ["DELIVERED"]
    assert order["shipments"][0]["events"] and order["shipments"][0]["lines"]
    assert len(order["returns"]) == 4 and all(r["lines"] for r in order["returns"])
    assert {"PLACED", "SHIPPED", "DELIVERED"} <= {step["kind"] for step in order["timeline"]}
    (status, body, _), _ = both_paths({"query": history, "variables": {}}, cast["owner"])
    assert status == 200 and "errors" not in body, body
    nodes = [edge["node"] for edge in body["data"]["myOrders"]["edges"]]
    assert [node["code"] for node in nodes] == [display(rma_of["an order's code"])]
    assert nodes[0]["lines"] and nodes[0]["shipments"][0]["events"]
    assert len(nodes[0]["returns"]) == 4 and all(r["lines"] for r in nodes[0]["returns"])
    assert planned == [True, True]


def test_a_planned_history_page_sends_as_many_statements_as_the_general_path(
    http: TestClient,
    services: Services,
    cast: dict[str, Account | None],
    place_order: Callable[..., OrderView],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loader fields in lockstep batch as graphql-core batches them: one statement per
    loader and level, whatever the page size."""
    owner = cast["owner"]
    assert owner is not None
    for _ in range(6):
        place_order(owner)
    headers = {"authorization": f"Bearer {owner.token}"}
    counted = services.db.count_statements()

    def statements(first: int) -> int:
        query = f"{{ myOrders(first: {first}) {{ {HISTORY_SELECTION} }} }}"
        del counted[:]
        response = http.post("/graphql", json={"query": query}, headers=headers)
        assert len(response.json()["data"]["myOrders"]["edges"]) == first
        return len(counted)

    planned = _spy_on_plans(monkeypatch)
    with_plans = {first: statements(first) for first in (1, 6)}
    assert planned == [True, True]
    monkeypatch.setattr(endpoint, "_plan_for", lambda *_: None)
    without = {first: statements(first) for first in (1, 6)}
    assert with_plans == without
    assert with_plans[1] == with_plans[6] <= 5, with_plans


def _compared_documents() -> list[str]:
    """The documents the side-by-side tests above send for every caller and every code."""
    documents: list[str] = []
    for test in (
        test_every_caller_and_every_code_gets_the_same_answer_from_both_paths,
        test_every_caller_and_every_rma_gets_the_same_answer_from_both_paths,
    ):
        for mark in test.pytestmark:
            if mark.name == "parametrize" and mark.args[0] == "query":
                documents.extend(mark.args[1])
    return documents


def test_every_vetted_root_field_is_compared_on_both_paths() -> None:
    """A root field added to VETTED_ROOT_FIELDS fails here until a side-by-side test sends
    a compiled document with it for every caller, and one that leads with it (the first
    root field names the operation in the metrics, which are compared too)."""
    compared: set[str] = set()
    leading: set[str] = set()
    for query in _compared_documents():
        document = parse_document(query)
        if compile_plan(app_schema, document, None) is None:
            continue  # the general path on both sides: compares nothing of the plans
        (operation,) = document.definitions
        roots = [s.name.value for s in operation.selection_set.selections]  # type: ignore[attr-defined]
        compared.update(roots)
        leading.add(roots[0])
    assert VETTED_ROOT_FIELDS - compared == set(), "vetted but never compared"
    assert VETTED_ROOT_FIELDS - leading == set(), "never compared as the first root field"


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
    # The limiter's clock stands still, so that Retry-After does not depend on how long
    # the 61 requests took on each path.
    monkeypatch.setattr(ratelimit, "time", types.SimpleNamespace(time=lambda: 1_800_000_000.0))
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


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    fields=st.lists(st.sampled_from(RETURN_FIELDS), min_size=1, max_size=6),
    alias=st.sampled_from(["", "a: ", "returnRequest: ", "order: "]),
    caller=st.sampled_from(["owner", "other", "anonymous", "support", "warehouse"]),
    kind=st.sampled_from(["requested", "refunded", "rejected", "unknown", "malformed"]),
)
def test_any_selection_of_return_fields_gets_the_same_answer_from_both_paths(
    fields: list[str],
    alias: str,
    caller: str,
    kind: str,
    cast: dict[str, Account | None],
    rma_of: dict[str, str],
    both_paths: Callable[..., tuple[Any, Any]],
) -> None:
    query = f"query($rma: String!) {{ {alias}returnRequest(rma: $rma) {{ {' '.join(fields)} }} }}"
    served, general = both_paths({"query": query, "variables": {"rma": rma_of[kind]}}, cast[caller])
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


# -- async resolvers below the root (loader fields), in lockstep -----------------------------


@strawberry.type
class Leaf:
    n: int

    @strawberry.field
    async def double(self, info: strawberry.Info) -> int:
        await asyncio.sleep(0)  # a bare yield: the lockstep goes round again
        return self.n * 2

    @strawberry.field
    async def broken(self, info: strawberry.Info) -> int:
        if self.n == 2:
            raise ValueError("leaf failed")
        return self.n

    @strawberry.field
    async def maybe(self, info: strawberry.Info) -> int | None:
        if self.n == 3:
            raise ValueError("maybe failed")
        return self.n


@strawberry.type
class Branch:
    @strawberry.field
    async def leaves(self, info: strawberry.Info) -> list[Leaf]:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, [Leaf(n=n) for n in (1, 2, 3)])
        leaves: list[Leaf] = await future  # a loader-like wait on a future
        return leaves

    @strawberry.field
    async def optional_leaves(self, info: strawberry.Info) -> list[Leaf | None]:
        return [Leaf(n=n) for n in (1, 2, 3)]

    @strawberry.field
    def name(self) -> str:
        return "branch"


@strawberry.type
class AsyncQuery:
    @strawberry.field
    async def order(self, info: strawberry.Info, code: str) -> list[Branch] | None:
        if code == "raise":
            raise ValueError("root failed")
        return [Branch(), Branch()]


@pytest.fixture(scope="module")
def async_schema() -> Iterator[strawberry.Schema]:
    yield strawberry.Schema(query=AsyncQuery)


@pytest.mark.parametrize(
    "selection",
    [
        "name leaves { n double }",
        "leaves { double maybe }",
        "leaves { n broken } name",
        "name optionalLeaves { broken double }",
        "optionalLeaves { maybe } leaves { double }",
        "leaves { broken } optionalLeaves { broken }",
    ],
)
@pytest.mark.parametrize("code", ["ok", "raise"])
def test_async_fields_below_the_root_match_graphql_core_errors_and_null_propagation(
    async_schema: strawberry.Schema, selection: str, code: str
) -> None:
    query = f"query($c: String!) {{ order(code: $c) {{ {selection} }} }}"
    plan = compile_plan(async_schema, parse_document(query), None)
    assert plan is not None

    async def both() -> tuple[Any, Any]:
        compiled = await plan.run(None, {"c": code}, "rid")
        reference = await async_schema.execute(query, variable_values={"c": code})
        return compiled, reference

    compiled, reference = asyncio.run(both())
    assert compiled is not None
    assert compiled["data"] == reference.data
    expected = [mask_error(error, "rid").formatted for error in reference.errors or []]
    assert compiled.get("errors", []) == expected
    assert bool(expected) == (code == "raise" or "broken" in selection or "maybe" in selection)


def test_a_plan_cut_off_by_the_time_cap_answers_and_counts_like_the_general_path(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request time cap cancels a plan as it cancels graphql-core: 503
    SERVICE_UNAVAILABLE, counted once as such under the operation's root field."""

    async def slow(*_: Any, **__: Any) -> Any:
        await asyncio.sleep(2)

    monkeypatch.setattr(OrderService, "get_order", slow)
    capped = replace(settings, request_timeout_seconds=0.3)
    services = build_services(capped, passwords=FAST_PASSWORDS)
    planned = _spy_on_plans(monkeypatch)
    body = {"query": COMPILED[0], "variables": {"code": generate()}}
    answers = []
    with TestClient(create_app(capped, run_sender=False, services=services)) as http:
        for plans in (True, False):
            with monkeypatch.context() as patch:
                if not plans:
                    patch.setattr(endpoint, "_plan_for", lambda *_: None)
                before = _request_metrics()
                response = http.post("/graphql", json=body)
                after = _request_metrics()
            counted = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)}
            answers.append((response.status_code, response.json()["errors"], counted))
    assert planned == [True]
    assert answers[0] == answers[1]
    status, errors, counted = answers[0]
    assert status == 503 and errors[0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert list(counted.values()) == [1.0] and "SERVICE_UNAVAILABLE" in next(iter(counted))


WAITED: list[asyncio.Future[int]] = []  # what Slow.later waits for, per run


@strawberry.type
class Slow:
    @strawberry.field
    async def later(self, info: strawberry.Info) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        WAITED.append(future)  # a loader's future that is never answered
        return await future


@strawberry.type
class SlowQuery:
    @strawberry.field
    async def order(self, info: strawberry.Info, code: str) -> list[Slow] | None:
        return [Slow(), Slow()]


def test_a_cancelled_plan_cancels_what_the_fields_below_the_root_wait_for() -> None:
    """Cancelling a request (the time cap) cancels the futures its fields wait for on both
    paths, so a DataLoader batch with no caller left stops its statement."""
    schema = strawberry.Schema(query=SlowQuery)
    query = '{ order(code: "x") { later } }'
    plan = compile_plan(schema, parse_document(query), None)
    assert plan is not None

    async def cancelled_while_waiting(planned: bool) -> list[bool]:
        WAITED.clear()
        running = plan.run(None, None, "rid") if planned else schema.execute(query)
        task = asyncio.ensure_future(running)
        for _ in range(100):
            if len(WAITED) == 2:
                break
            await asyncio.sleep(0)
        assert len(WAITED) == 2 and not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return [future.cancelled() for future in WAITED]

    assert asyncio.run(cancelled_while_waiting(planned=False)) == [True, True]
    assert asyncio.run(cancelled_while_waiting(planned=True)) == [True, True]
