"""Hostile bytes, generated from the schema: every String and ID argument of every Query,
Mutation and Subscription field — and every String/ID field of the input objects they take,
nested and in lists — is sent a lone UTF-16 surrogate (`"\\ud800"`, valid JSON) and a NUL,
as a variable and as an inline literal, over HTTP and over WebSocket. The answer is always
one BAD_USER_INPUT naming the variable (`$v.email`) or the argument (`login.email`), never
INTERNAL and never a resolver's answer: the check is one place (app/wire.py, called by
GuardMiddleware) before both GraphQL paths.

A new field or input field is covered by construction. Each generated document is first
sent with harmless text and must pass validation, so that a refusal proves the check and
not a broken document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
)
from starlette.testclient import TestClient

from app.container import build_services
from app.main import create_app
from app.schema import build_schema
from app.security.roles import Role
from app.settings import Settings
from tests.conftest import FAST_PASSWORDS

SCHEMA = build_schema()._schema
SURROGATE = "\ud800"
NUL = "\x00"
HOSTILE = {"surrogate": f"a{SURROGATE}b", "nul": f"a{NUL}b", "low-surrogate": "\udfff"}
TEXT_SCALARS = ("String", "ID")
SAMPLES: dict[str, Any] = {
    "String": "x",
    "ID": "x",
    "Int": 1,
    "Float": 1.0,
    "Boolean": True,
    "Date": "2026-01-02",
    "DateTime": "2026-01-02T03:04:05+00:00",
}

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Target:
    """One place that takes text: `root.field(argument: …path…)`."""

    root: str  # query, mutation, subscription
    field: str
    argument: str
    path: Path  # inside the argument's value: ("email",), ("lines", 0, "sku"), ()

    @property
    def label(self) -> str:
        return f"{self.field}.{self.argument}{_suffix(self.path)}"


def _suffix(path: Path) -> str:
    return "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)


def _text_paths(type_: GraphQLInputType, seen: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Every path from a value of `type_` to a String/ID leaf (input objects recursed)."""
    if isinstance(type_, GraphQLNonNull):
        yield from _text_paths(type_.of_type, seen)
    elif isinstance(type_, GraphQLList):
        for path in _text_paths(type_.of_type, seen):
            yield (0, *path)
    elif isinstance(type_, GraphQLScalarType) and type_.name in TEXT_SCALARS:
        yield ()
    elif isinstance(type_, GraphQLInputObjectType) and type_.name not in seen:
        for name, field in type_.fields.items():
            for path in _text_paths(field.type, seen | {type_.name}):
                yield (name, *path)


def targets() -> list[Target]:
    found = []
    for root, type_ in (
        ("query", SCHEMA.query_type),
        ("mutation", SCHEMA.mutation_type),
        ("subscription", SCHEMA.subscription_type),
    ):
        assert isinstance(type_, GraphQLObjectType)
        for field_name, field in type_.fields.items():
            for argument, definition in field.args.items():
                for path in _text_paths(definition.type):
                    found.append(Target(root, field_name, argument, path))
    return found


TARGETS = targets()


def _sample(type_: GraphQLInputType, hostile_at: Path | None, text: str) -> Any:
    """A valid value of `type_`, with `text` at `hostile_at` (None: nowhere)."""
    if isinstance(type_, GraphQLNonNull):
        return _sample(type_.of_type, hostile_at, text)
    if isinstance(type_, GraphQLList):
        inner = hostile_at[1:] if hostile_at else None
        return [_sample(type_.of_type, inner, text)]
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLScalarType):
        return text if hostile_at == () else SAMPLES[type_.name]
    assert isinstance(type_, GraphQLInputObjectType)
    value = {}
    for name, field in type_.fields.items():
        inner = hostile_at[1:] if hostile_at and hostile_at[0] == name else None
        if inner is not None or isinstance(field.type, GraphQLNonNull):
            value[name] = _sample(field.type, inner, text)
    return value


def _literal(type_: GraphQLInputType, value: Any) -> str:
    """`value` as a GraphQL literal (text as is: a raw surrogate stays a raw character)."""
    named = get_named_type(type_)
    if isinstance(value, list):
        inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        assert isinstance(inner, GraphQLList)
        return "[" + ", ".join(_literal(inner.of_type, item) for item in value) + "]"
    if isinstance(named, GraphQLEnumType):
        return str(value)
    if isinstance(named, GraphQLInputObjectType):
        fields = ", ".join(
            f"{name}: {_literal(named.fields[name].type, item)}" for name, item in value.items()
        )
        return "{" + fields + "}"
    return json.dumps(value, ensure_ascii=False)


def request_for(target: Target, text: str, *, inline: bool) -> dict[str, Any]:
    """A document for `target`: every required argument filled in, the target's argument
    carrying `text` at its path, as the variable `$v` or inline."""
    root = {
        "query": SCHEMA.query_type,
        "mutation": SCHEMA.mutation_type,
        "subscription": SCHEMA.subscription_type,
    }[target.root]
    assert root is not None
    field = root.fields[target.field]
    arguments, variables, declarations = [], {}, ""
    for name, definition in field.args.items():
        if name == target.argument:
            value = _sample(definition.type, target.path, text)
            if inline:
                arguments.append(f"{name}: {_literal(definition.type, value)}")
            else:
                arguments.append(f"{name}: $v")
                variables["v"] = value
                declarations = f"($v: {definition.type})"
        elif isinstance(definition.type, GraphQLNonNull):
            value = _sample(definition.type, None, text)
            arguments.append(f"{name}: {_literal(definition.type, value)}")
    selection = (
        " { __typename }"
        if not isinstance(get_named_type(field.type), GraphQLScalarType | GraphQLEnumType)
        else ""
    )
    call = f"{target.field}({', '.join(arguments)})" if arguments else target.field
    query = f"{target.root} Hostile{declarations} {{ {call}{selection} }}"
    return {"query": query, "variables": variables}


def expected_field(target: Target, *, inline: bool) -> str:
    return target.label if inline else f"$v{_suffix(target.path)}"


def assert_refused_naming(body: dict[str, Any], field: str, label: str) -> None:
    errors = body.get("errors") or []
    codes = [(e.get("extensions") or {}).get("code") for e in errors]
    assert codes == ["BAD_USER_INPUT"], f"{label}: {body}"
    assert errors[0]["extensions"]["field"] == field, f"{label}: {errors[0]}"
    assert field in errors[0]["message"], f"{label}: {errors[0]}"
    assert not (body.get("data") or {}), f"{label}: nothing may run: {body}"


# -- the walk itself ------------------------------------------------------------------------


def test_the_walk_finds_every_text_argument_named_in_the_issue() -> None:
    labels = {target.label for target in TARGETS}
    for expected in (
        "login.email",
        "login.password",
        "register.input.email",
        "register.input.password",
        "register.input.name",
        "myOrders.filter.text",
        "startCheckout.shippingAddress.line1",
        "startCheckout.shippingAddress.postalCode",
        "startCheckout.lines[0].sku",
        "supportOrder.reason",
        "supportOrder.code",
        "order.code",
        "orderUpdates.code",
    ):
        assert expected in labels, sorted(labels)
    assert len(TARGETS) >= 60, len(TARGETS)


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def roomy(settings: Settings) -> Iterator[TestClient]:
    """The app with budgets wide enough for one request per target and kind."""
    wide: dict[str, Any] = {
        budget.name: "100000/minute"
        for budget in fields(settings.rate_limits)
        if "/" in str(getattr(settings.rate_limits, budget.name))
    }
    limits = replace(settings.rate_limits, **wide)
    roomy_settings = replace(settings, rate_limits=limits)
    services = build_services(roomy_settings, passwords=FAST_PASSWORDS)
    app = create_app(roomy_settings, run_sender=False, services=services)
    with TestClient(app, client=("10.0.0.9", 50000)) as client:
        yield client


@pytest.fixture
def admin_token(roomy: TestClient) -> str:
    """An ADMIN: the broadest caller, so that as many fields as possible run their
    resolvers in the control requests (the refusals do not depend on the caller)."""
    services = roomy.app.state.services  # type: ignore[attr-defined]
    portal = roomy.portal
    assert portal is not None
    email, password = "hostile-admin@example.com", "correct-horse-battery-9"

    async def admin() -> str:
        await services.accounts.create_user(email, password, name="Admin", role=Role.ADMIN)
        return str((await services.accounts.login(email, password, "10.0.0.9")).access_token)

    return portal.call(admin)


def post(client: TestClient, request: dict[str, Any], token: str, accept: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    if accept:
        headers["accept"] = accept
    # ASCII JSON: the surrogate travels as the escape \ud800 (valid JSON), NUL as \u0000
    return client.post("/graphql", content=json.dumps(request).encode(), headers=headers)


def test_every_generated_document_is_valid_with_harmless_text(
    roomy: TestClient, admin_token: str
) -> None:
    # control: with "x" instead of the hostile text, no document is refused before it
    # runs (syntax, validation, coercion): the refusals below are about the text alone
    for target in TARGETS:
        if target.root == "subscription":
            continue  # over POST a subscription is refused as such; checked over WebSocket
        for inline in (False, True):
            body = post(roomy, request_for(target, "x", inline=inline), admin_token).json()
            unpathed = [e for e in body.get("errors") or [] if not e.get("path")]
            assert not unpathed, f"{target.label} inline={inline}: {body}"


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("inline", [False, True], ids=["variable", "inline"])
def test_every_text_argument_refuses_unencodable_text_over_http(
    roomy: TestClient, admin_token: str, kind: str, inline: bool
) -> None:
    for target in TARGETS:
        request = request_for(target, HOSTILE[kind], inline=inline)
        response = post(roomy, request, admin_token)
        assert response.status_code == 200, f"{target.label}: {response.text}"
        assert_refused_naming(response.json(), expected_field(target, inline=inline), target.label)


def test_graphql_response_json_clients_get_400_without_data(
    roomy: TestClient, admin_token: str
) -> None:
    request = request_for(
        Target("mutation", "login", "email", ()), HOSTILE["surrogate"], inline=False
    )
    response = post(roomy, request, admin_token, accept="application/graphql-response+json")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/graphql-response+json")
    body = response.json()
    assert "data" not in body
    assert_refused_naming(body, "$v", "login.email")


@pytest.mark.parametrize(
    ("label", "request_body", "field"),
    [
        (
            "escape \\ud800 in a literal",
            {"query": 'query { order(code: "A\\ud800") { code } }'},
            "order.code",  # the parser would refuse it too, without naming the argument
        ),
        (
            "escape \\u0000 in a literal",
            {
                "query": 'query { myOrders(filter: {text: "a\\u0000"}) '
                "{ pageInfo { hasNextPage } } }"
            },
            "myOrders.filter.text",
        ),
        (
            "variable default",
            {
                "query": f'query Q($t: String = "{SURROGATE}") '
                '{ supportOrder(code: "x", reason: $t) { __typename } }'
            },
            "$t",
        ),
        ("operationName", {"query": "{ __typename }", "operationName": SURROGATE}, "operationName"),
        ("a comment", {"query": f"# {SURROGATE}\n{{ __typename }}"}, "query"),
        ("a variable's name", {"query": "{ __typename }", "variables": {SURROGATE: 1}}, "$<key>"),
        (
            "extensions",
            {
                "query": "{ __typename }",
                "extensions": {"persistedQuery": {"sha256Hash": SURROGATE}},
            },
            "extensions.persistedQuery.sha256Hash",
        ),
    ],
)
def test_unencodable_text_anywhere_in_the_request_is_bad_user_input(
    roomy: TestClient, admin_token: str, label: str, request_body: dict[str, Any], field: str | None
) -> None:
    body = post(roomy, request_body, admin_token).json()
    codes = [(e.get("extensions") or {}).get("code") for e in body.get("errors") or []]
    assert codes == ["BAD_USER_INPUT"], f"{label}: {body}"
    if field is not None:
        assert body["errors"][0]["extensions"]["field"] == field, body


def test_ordinary_text_passes_untouched(roomy: TestClient, admin_token: str) -> None:
    # control: non-ASCII text, astral characters (a valid surrogate pair in JSON) and an
    # escaped backslash before "u0000" are ordinary text
    for text in (
        "München, Straße, Łódź",
        "😀 \ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16"),
        "\\u0000",
    ):
        request = request_for(Target("query", "myOrders", "filter", ("text",)), text, inline=False)
        body = post(roomy, request, admin_token).json()
        assert not body.get("errors"), (text, body)


# -- over WebSocket ---------------------------------------------------------------------------


@contextmanager
def socket(client: TestClient, token: str) -> Iterator[Any]:
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        assert ws.receive_json()["type"] == "connection_ack"
        yield ws


def test_every_text_argument_refuses_unencodable_text_over_websocket(
    roomy: TestClient, admin_token: str
) -> None:
    with socket(roomy, admin_token) as ws:
        for number, target in enumerate(TARGETS):
            for inline in (False, True):
                operation_id = f"{number}-{inline}"
                request = request_for(target, HOSTILE["surrogate"], inline=inline)
                ws.send_text(
                    json.dumps({"id": operation_id, "type": "subscribe", "payload": request})
                )
                message = ws.receive_json()
                assert message["id"] == operation_id, message
                assert message["type"] == "error", f"{target.label}: {message}"
                assert_refused_naming(
                    {"errors": message["payload"]},
                    expected_field(target, inline=inline),
                    target.label,
                )
        # the connection is still open and serves ordinary operations
        ws.send_json({"id": "ok", "type": "subscribe", "payload": {"query": "{ __typename }"}})
        assert ws.receive_json() == {
            "id": "ok",
            "type": "next",
            "payload": {"data": {"__typename": "Query"}},
        }


def test_a_hostile_subscribe_before_connection_ack_is_still_unauthorized(
    roomy: TestClient,
) -> None:
    request = request_for(
        Target("subscription", "orderUpdates", "code", ()), SURROGATE, inline=False
    )
    with roomy.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_text(json.dumps({"id": "1", "type": "subscribe", "payload": request}))
        message = ws.receive()
        assert message["type"] == "websocket.close"
        assert message["code"] == 4401


def test_the_legacy_graphql_ws_protocol_gets_the_same_answer(
    roomy: TestClient, admin_token: str
) -> None:
    request = request_for(Target("mutation", "login", "password", ()), SURROGATE, inline=False)
    with roomy.websocket_connect("/graphql", subprotocols=["graphql-ws"]) as ws:
        ws.send_json(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {admin_token}"}}
        )
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_text(json.dumps({"id": "1", "type": "start", "payload": request}))
        message = ws.receive_json()
        assert message["type"] == "error" and message["id"] == "1", message
        assert_refused_naming({"errors": [message["payload"]]}, "$v", "login.password")
