"""What a GraphQL security auditor (graphql-cop and friends) checks, against the real server
in production mode. Each test is one finding of such an audit and asserts it is absent.

The payloads are the auditors' own where they have one (graphql-cop's queries and its
detection rule are quoted in each test), plus variants an attacker would try next.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import httpx
import pytest
import websockets
from graphql import get_introspection_query
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.security_stage.conftest import (
    ERROR_CODES,
    Server,
    Tokens,
    forge,
    leaks,
    record,
    unverified_claims,
)

pytestmark = pytest.mark.e2e

JSON = {"content-type": "application/json"}
GRAPHQL_WS = Subprotocol("graphql-transport-ws")
IDE_MARKERS = ("graphiql", "graphql playground", "graphql-playground", "altair", "voyager")
TRACE_HEADERS = {
    "x-apollo-tracing": "1",
    "apollo-federation-include-trace": "ftv1",
    "x-debug": "1",
}


def errors_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body.get("errors") or [])


def codes_of(body: dict[str, Any]) -> list[str | None]:
    return [(e.get("extensions") or {}).get("code") for e in errors_of(body)]


def assert_refused(response: httpx.Response) -> dict[str, Any]:
    """The operation did not run: no data at all, at least one error."""
    body: dict[str, Any] = response.json()
    assert body.get("data") is None, body
    assert errors_of(body), body
    return body


def session_alive(server: Server, token: str) -> bool:
    body = server.gql("{ me { email } }", token=token)
    return bool((body.get("data") or {}).get("me"))


# -- information disclosure ---------------------------------------------------------------


def test_introspection_query_is_refused(prod_server: Server) -> None:
    # graphql-cop: the full introspection query; finding if data.__schema comes back.
    for query in (
        get_introspection_query(descriptions=True),
        "{ __schema { queryType { name } } }",
        '{ __type(name: "Order") { name fields { name } } }',
        "query { __schema { types { name } } }",
    ):
        body = assert_refused(prod_server.post(query))
        assert "introspection" in errors_of(body)[0]["message"].lower()
        assert "__schema" not in json.dumps(body.get("data"))


def test_introspection_is_refused_for_a_logged_in_caller_too(prod_server: Server) -> None:
    token = prod_server.login("alice@example.com").access
    body = assert_refused(prod_server.post("{ __schema { types { name } } }", token=token))
    assert "introspection" in errors_of(body)[0]["message"].lower()


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query { __schema { directive } }", None),  # graphql-cop's own probe
        ('{ ordr(code: "x") { code } }', None),  # field on Query
        ('{ order(code: "x") { cod stats } }', None),  # fields on Order
        ('{ order(cod: "x") { code } }', None),  # argument name
        ("{ myOrders(filter: {status: [DELIVERD]}) { pageInfo { hasNextPage } } }", None),
        ("{ myOrders(filtr: {}) { pageInfo { hasNextPage } } }", None),
        ("{ myOrders(filter: {stats: []}) { pageInfo { hasNextPage } } }", None),  # input field
        ("query { ...F } fragment F on Querry { me { email } }", None),  # type name
        ("{ me { emial } }", None),
        ("mutation { logut { ok } }", None),  # mutation name
        (
            "query Q($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
            {"f": {"stats": ["PLACED"], "txt": "mug"}},  # input fields in variables
        ),
        (
            "query Q($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
            {"f": {"status": ["DELIVERD"]}},  # enum value in variables
        ),
    ],
)
def test_field_suggestions_are_absent(
    prod_server: Server, bob: Tokens, query: str, variables: dict[str, Any] | None
) -> None:
    # graphql-cop: finding if the first error message contains "Did you mean".
    body = prod_server.post(query, variables, token=bob.access).json()
    assert errors_of(body), body
    text = json.dumps(body)
    assert "did you mean" not in text.lower(), text
    # no other wording of a hint either (graphql-js: "Did you mean", others: "similar")
    assert not re.search(r"similar|suggest|perhaps", text, re.IGNORECASE), text


@pytest.mark.parametrize("path", ["/graphql", "/graphql/", "/graphiql", "/playground"])
def test_graphiql_is_not_served_to_a_browser(prod_server: Server, path: str) -> None:
    # graphql-cop: GET each path; finding if the page mentions GraphiQL or Playground.
    response = httpx.get(
        prod_server.base_url + path,
        headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8", "user-agent": "Mozilla"},
        follow_redirects=True,
        timeout=10.0,
    )
    page = response.text.lower()
    assert not any(marker in page for marker in IDE_MARKERS), page[:500]
    assert "text/html" not in response.headers.get("content-type", "")
    assert response.status_code in (404, 405), response.status_code


def test_console_is_the_staff_console_not_an_ide(prod_server: Server) -> None:
    # graphql-cop also GETs /console, where this API serves its staff console (STAFF_CONSOLE,
    # app/console/): a client of the API under a strict CSP, never a GraphQL IDE.
    response = httpx.get(
        prod_server.base_url + "/console",
        headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8", "user-agent": "Mozilla"},
        follow_redirects=True,
        timeout=10.0,
    )
    page = response.text.lower()
    assert not any(marker in page for marker in IDE_MARKERS), page[:500]
    assert "staff console" in page
    assert "script-src 'self'" in response.headers["content-security-policy"]


# -- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json", "*/*"])
def test_get_based_queries_are_refused(prod_server: Server, accept: str) -> None:
    # graphql-cop: GET ?query={__typename}; finding if data.__typename comes back.
    response = httpx.get(
        prod_server.graphql_url,
        params={"query": "{__typename}"},
        headers={"accept": accept},
        timeout=10.0,
    )
    assert response.status_code == 405
    assert_refused(response)


def test_get_based_mutations_are_refused_and_change_nothing(prod_server: Server) -> None:
    # graphql-cop: GET ?query=mutation {__typename}; finding if data.__typename comes back.
    response = httpx.get(
        prod_server.graphql_url, params={"query": "mutation {__typename}"}, timeout=10.0
    )
    assert response.status_code == 405
    assert_refused(response)
    # the real thing: a state-changing mutation over GET, with a live session
    token = prod_server.login("alice@example.com").access
    response = httpx.get(
        prod_server.graphql_url,
        params={"query": "mutation { logout { ok } }"},
        headers={"authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    assert response.status_code == 405
    assert_refused(response)
    assert session_alive(prod_server, token), "a GET mutation logged the session out"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/x-www-form-urlencoded",
            b"query=mutation%20%7B%20logout%20%7B%20ok%20%7D%20%7D",
        ),
        (
            "multipart/form-data; boundary=XYZ",
            b'--XYZ\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
            b'{"query": "mutation { logout { ok } }"}\r\n'
            b'--XYZ\r\nContent-Disposition: form-data; name="map"\r\n\r\n{}\r\n--XYZ--\r\n',
        ),
        ("text/plain", b'{"query": "mutation { logout { ok } }"}'),
        ("text/plain;charset=UTF-8", b'{"query": "mutation { logout { ok } }"}'),
        ("application/graphql", b"mutation { logout { ok } }"),
        (None, b'{"query": "mutation { logout { ok } }"}'),
    ],
)
def test_non_json_posts_are_refused_and_change_nothing(
    prod_server: Server, content_type: str | None, body: bytes
) -> None:
    # graphql-cop "POST based url-encoded query": finding if data.__typename comes back.
    # Here the form carries a real mutation with a live session: it must not run.
    token = prod_server.login("alice@example.com").access
    headers = {"authorization": f"Bearer {token}"}
    if content_type is not None:
        headers["content-type"] = content_type
    response = httpx.post(prod_server.graphql_url, content=body, headers=headers, timeout=10.0)
    assert response.status_code == 415, response.text
    assert_refused(response)
    assert session_alive(prod_server, token), f"a {content_type} POST ran the mutation"


def test_query_in_the_url_of_a_post_is_not_run(prod_server: Server) -> None:
    # graphql-cop sends its CSRF probe as POST /graphql?query={__typename} without a body.
    response = httpx.post(
        prod_server.graphql_url, params={"query": "query {__typename}"}, timeout=10.0
    )
    assert response.status_code >= 400
    assert '"data"' not in response.text
    response = httpx.post(
        prod_server.graphql_url,
        params={"query": "query {__typename}"},
        content=b"{}",
        headers=JSON,
        timeout=10.0,
    )
    assert response.status_code >= 400
    assert '"data"' not in response.text


def test_cross_site_websocket_is_refused(prod_server: Server) -> None:
    # A page on another site can open a WebSocket to us (no CORS for WebSockets): the
    # handshake must be refused when the Origin is foreign.
    async def attempt(origin: str | None) -> str:
        kwargs: dict[str, Any] = {"subprotocols": [GRAPHQL_WS]}
        if origin is not None:
            kwargs["origin"] = origin
        try:
            async with websockets.connect(prod_server.ws_url, **kwargs) as ws:
                await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                return str(json.loads(await ws.recv())["type"])
        except InvalidStatus as exc:
            return f"HTTP {exc.response.status_code}"

    assert asyncio.run(attempt("https://evil.example")) == "HTTP 403"
    assert asyncio.run(attempt("null")) == "HTTP 403"
    assert asyncio.run(attempt(None)) == "connection_ack"  # control: a native client works


# -- denial of service --------------------------------------------------------------------


def test_alias_overloading_is_refused(prod_server: Server) -> None:
    # graphql-cop: 101 aliases of __typename; finding if data.alias100 comes back.
    query = "query { " + "".join(f"alias{i}:__typename \n" for i in range(101)) + " }"
    body = assert_refused(prod_server.post(query))
    assert "alias" in errors_of(body)[0]["message"].lower()
    # the same with an expensive field
    heavy = (
        "query { "
        + " ".join(f"p{i}: products(first: 50) {{ pageInfo {{ hasNextPage }} }}" for i in range(31))
        + " }"
    )
    assert_refused(prod_server.post(heavy))


def test_array_based_batch_queries_are_refused(prod_server: Server) -> None:
    # graphql-cop: a JSON array of 11 `query { __typename }`; finding if >= 10 results.
    batch = [{"query": "query { __typename }"} for _ in range(11)]
    response = httpx.post(prod_server.graphql_url, json=batch, timeout=10.0)
    assert response.status_code == 400
    assert "__typename" not in response.text
    # a batch of mutations does not run either
    token = prod_server.login("alice@example.com").access
    response = httpx.post(
        prod_server.graphql_url,
        json=[{"query": "mutation { logout { ok } }"}] * 2,
        headers={"authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    assert response.status_code == 400
    assert session_alive(prod_server, token)


def test_directive_overloading_is_refused(prod_server: Server) -> None:
    # graphql-cop: 10 unknown directives on one field; finding if the server answers with
    # exactly 10 errors (it processed each one). We want one refusal, not one error each.
    cop = "query { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }"
    body = assert_refused(prod_server.post(cop))
    assert len(errors_of(body)) == 1, (
        f"{len(errors_of(body))} errors: every directive was processed"
    )
    for query in (
        "query { __typename " + "@skip(if: false) " * 50 + "}",
        "query { __typename " + "@include(if: true) " * 200 + "}",
        "query { me " + "@aa " * 300 + "{ email } }",
    ):
        body = assert_refused(prod_server.post(query))
        assert len(errors_of(body)) == 1, body
        assert "directive" in errors_of(body)[0]["message"].lower()


def test_ordinary_directives_still_work(prod_server: Server) -> None:
    # control for the directive cap: @skip and @include as a client really uses them
    token = prod_server.login("alice@example.com").access
    query = """query Q($full: Boolean!) {
      me @include(if: true) { email name @skip(if: $full) role @include(if: $full) }
      __typename @skip(if: false) @include(if: true)
    }"""
    body = prod_server.post(query, {"full": True}, token=token).json()
    assert body == {
        "data": {"me": {"email": "alice@example.com", "role": "CUSTOMER"}, "__typename": "Query"}
    }


def test_field_duplication_is_refused(prod_server: Server) -> None:
    # graphql-cop: `__typename` 500 times; finding if data.__typename comes back. The cost is
    # in validation (overlapping-fields checks are quadratic in the duplicates).
    body = assert_refused(prod_server.post("query { " + "__typename \n" * 500 + "} "))
    assert len(errors_of(body)) == 1, body
    heavy = "query { " + "products(first: 1) { pageInfo { hasNextPage } } " * 150 + "}"
    assert_refused(prod_server.post(heavy))
    inline = (
        "query { " + "... on Query { products(first: 1) { pageInfo { hasNextPage } } } " * 120 + "}"
    )
    assert_refused(prod_server.post(inline))


def test_circular_introspection_is_refused(prod_server: Server) -> None:
    # graphql-cop: nested __schema.types.fields.type...; finding if > 25 types come back.
    cop = (
        "query { __schema { types { fields { type { fields { type { fields { type { fields "
        "{ type { name } } } } } } } } } } }"
    )
    body = assert_refused(prod_server.post(cop))
    assert "introspection" in errors_of(body)[0]["message"].lower()
    inner = "name"
    for _ in range(8):
        inner = f"ofType {{ {inner} }}"
    deep = f'{{ __type(name: "Order") {{ fields {{ type {{ {inner} }} }} }} }}'
    assert_refused(prod_server.post(deep))


def test_circular_fragments_are_refused(prod_server: Server) -> None:
    # graphql-cop: fragments A -> B -> A; finding if the answer has no "errors".
    cop = """
      query { __schema { ...A } }
      fragment A on __Schema { __typename ...B }
      fragment B on __Schema { ...A }
    """
    assert_refused(prod_server.post(cop))
    own_types = """
      query { ...A }
      fragment A on Query { __typename ...B }
      fragment B on Query { me { email } ...A }
    """
    assert_refused(prod_server.post(own_types))


def test_token_limit_holds(prod_server: Server) -> None:
    # documents beyond 2,000 tokens are refused by the parser, before validation
    body = assert_refused(prod_server.post("query { " + " ".join(["__typename"] * 3000) + " }"))
    assert "token" in errors_of(body)[0]["message"].lower()


def test_oversized_bodies_are_refused(prod_server: Server) -> None:
    big = json.dumps({"query": "{ __typename }", "variables": {"x": "a" * 70_000}}).encode()
    response = httpx.post(prod_server.graphql_url, content=big, headers=JSON, timeout=10.0)
    assert response.status_code == 413
    # streamed without Content-Length: the cap counts the bytes that arrive

    def chunks() -> Any:
        yield b'{"query": "{ __typename }", "variables": {"x": "'
        for _ in range(80):
            yield b"a" * 1024
        yield b'"}}'

    response = httpx.post(prod_server.graphql_url, content=chunks(), headers=JSON, timeout=10.0)
    assert response.status_code == 413


# -- leaks --------------------------------------------------------------------------------


def test_trace_mode_is_off(prod_server: Server) -> None:
    # graphql-cop: `query { __typename }`; finding if extensions.tracing, an exception or a
    # stack trace comes back. Asked for explicitly too (Apollo headers, request extensions).
    token = prod_server.login("alice@example.com").access
    for payload in (
        {"query": "query { __typename }"},
        {"query": "query { __typename }", "extensions": {"tracing": True}},
        {"query": "{ me { email } }", "extensions": {"tracing": True, "cacheControl": True}},
        {"query": '{ order(code: "0000-0000-0000-0000") { code } }'},
    ):
        response = httpx.post(
            prod_server.graphql_url,
            json=payload,
            headers={**TRACE_HEADERS, "authorization": f"Bearer {token}"},
            timeout=10.0,
        )
        body = response.json()
        assert "extensions" not in body, body
        text = json.dumps(body).lower()
        for marker in ("tracing", "ftv1", "stacktrace", "exception", "duration", "resolvers"):
            assert marker not in text, text
        assert not any(h.lower().startswith(("x-trace", "server-timing")) for h in response.headers)


MALFORMED_BODIES: list[tuple[str, bytes]] = [
    ("graphql-cop unhandled-error probe", b'{"query": "qwerty cop { abc }"}'),
    ("JSON null", b"null"),
    ("JSON number", b"5"),
    ("JSON string", b'"{ __typename }"'),
    ("JSON true", b"true"),
    ("not JSON", b"{bad json"),
    ("empty", b""),
    ("invalid UTF-8", b'{"query": "\xff\xfe"}'),
    ("NUL in query", b'{"query": "{ __typename \\u0000 }"}'),
    ("query is a number", b'{"query": 5}'),
    ("query is an object", b'{"query": {"a": 1}}'),
    ("variables is a string", b'{"query": "{ __typename }", "variables": "x"}'),
    ("variables is a list", b'{"query": "{ __typename }", "variables": [1]}'),
    ("operationName is a number", b'{"query": "{ __typename }", "operationName": 5}'),
    ("unknown operationName", b'{"query": "query A { __typename }", "operationName": "B"}'),
    ("extensions is a string", b'{"query": "{ __typename }", "extensions": "x"}'),
    (
        "deeply nested JSON",
        b'{"query": "{ __typename }", "variables": {"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}",
    ),
    ("unterminated string", b'{"query": "{ order(code: \\"abc) { code } }"}'),
    (
        "huge integer literal",
        b'{"query": "{ products(first: 99999999999999999999999) { pageInfo { hasNextPage } } }"}',
    ),
    (
        "deep list literal",
        b'{"query": "{ order(code: ' + b"[" * 300 + b"]" * 300 + b') { code } }"}',
    ),
]

START_CHECKOUT = (
    "mutation M($l: [OrderLineInput!]!, $a: AddressInput!) "
    "{ startCheckout(lines: $l, shippingAddress: $a) { userErrors { code } } }"
)
MALFORMED_VARIABLES: list[tuple[str, str, dict[str, Any]]] = [
    ("object for String", "query Q($c: String!) { order(code: $c) { code } }", {"c": {"a": [1]}}),
    ("list for String", "query Q($c: String!) { order(code: $c) { code } }", {"c": ["x"] * 50}),
    ("null for String!", "query Q($c: String!) { order(code: $c) { code } }", {"c": None}),
    ("missing variable", "query Q($c: String!) { order(code: $c) { code } }", {}),
    ("huge string", "query Q($c: String!) { order(code: $c) { code } }", {"c": "7" * 60_000}),
    (
        "NUL and controls",
        "query Q($c: String!) { order(code: $c) { code } }",
        {"c": "\x00\x01\u202e"},
    ),
    (
        "float for Int",
        "query Q($n: Int) { myOrders(first: $n) { pageInfo { hasNextPage } } }",
        {"n": 1.5},
    ),
    (
        "int overflow",
        "query Q($n: Int) { myOrders(first: $n) { pageInfo { hasNextPage } } }",
        {"n": 2**64},
    ),
    (
        "negative page",
        "query Q($n: Int) { myOrders(first: $n) { pageInfo { hasNextPage } } }",
        {"n": -1},
    ),
    (
        "bad cursor",
        "query Q($a: String) { myOrders(after: $a) { pageInfo { hasNextPage } } }",
        {"a": "' OR 1=1 --"},
    ),
    (
        "cursor of nothing",
        "query Q($a: String) { myOrders(after: $a) { pageInfo { hasNextPage } } }",
        {"a": "eyJ4IjoxfQ"},
    ),
    (
        "bad DateTime",
        "query Q($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
        {"f": {"placedFrom": "yesterday"}},
    ),
    (
        "DateTime overflow",
        "query Q($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
        {"f": {"placedFrom": "99999-01-01T00:00:00"}},
    ),
    (
        "bad enum",
        "query Q($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
        {"f": {"status": ["NOPE"]}},
    ),
    (
        "SQL in text filter",
        "query Q($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
        {"f": {"text": "%' UNION SELECT password_hash FROM users --"}},
    ),
    (
        "LIKE wildcards",
        "query Q($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
        {"f": {"text": "%_%\\"}},
    ),
    (
        "negative quantity",
        START_CHECKOUT,
        {
            "l": [{"sku": "MUG-001", "quantity": -5}],
            "a": {"name": "x", "line1": "y", "city": "z", "postalCode": "1", "country": "DE"},
        },
    ),
    (
        "huge quantity",
        START_CHECKOUT,
        {
            "l": [{"sku": "MUG-001", "quantity": 2**31 - 1}] * 40,
            "a": {
                "name": "x" * 5000,
                "line1": "y",
                "city": "z",
                "postalCode": "1",
                "country": "??",
            },
        },
    ),
    (
        "placeOrder without lines",
        'mutation M { placeOrder(paymentToken: "tok_visa") { userErrors { code } } }',
        {},
    ),
    (
        "refresh token garbage",
        "mutation M($t: String!) { refreshToken(refreshToken: $t) { userErrors { code } } }",
        {"t": "\x00" * 1000},
    ),
    (
        "register with a huge email",
        "mutation M($i: RegisterInput!) { register(input: $i) { userErrors { code } } }",
        {"i": {"email": "a" * 10_000 + "@example.com", "password": "x"}},
    ),
]


def _assert_clean(label: str, response: httpx.Response) -> None:
    assert response.status_code < 500, f"{label}: HTTP {response.status_code} {response.text[:500]}"
    found = leaks(response.text)
    assert not found, f"{label}: {found} in {response.text[:800]}"
    try:
        body = response.json()
    except ValueError:
        return  # a plain-text 4xx from the transport layer (checked for leaks above)
    if not isinstance(body, dict):
        pytest.fail(f"{label}: answer is not a JSON object: {body!r}")
    for error in errors_of(body):
        code = (error.get("extensions") or {}).get("code")
        assert code in ERROR_CODES or code is None, f"{label}: unknown code {code}"
        if code == "INTERNAL":
            assert set(error["extensions"]) == {"code", "requestId"}, error
        assert "exception" not in (error.get("extensions") or {}), error


@pytest.mark.parametrize(("label", "raw"), MALFORMED_BODIES, ids=[m[0] for m in MALFORMED_BODIES])
def test_malformed_requests_never_leak_or_fail_the_server(
    prod_server: Server, label: str, raw: bytes
) -> None:
    # graphql-cop "Unhandled Errors Detection": finding if errors[0].extensions.exception.
    response = httpx.post(prod_server.graphql_url, content=raw, headers=JSON, timeout=30.0)
    _assert_clean(label, response)
    assert response.status_code >= 400 or errors_of(response.json()), response.text[:300]


@pytest.mark.parametrize(
    ("label", "query", "variables"), MALFORMED_VARIABLES, ids=[m[0] for m in MALFORMED_VARIABLES]
)
def test_malformed_variables_never_leak_or_fail_the_server(
    prod_server: Server, bob: Tokens, label: str, query: str, variables: dict[str, Any]
) -> None:
    response = prod_server.post(query, variables, token=bob.access)
    _assert_clean(label, response)
    assert "INTERNAL" not in codes_of(response.json()), response.text[:500]


def test_an_unexpected_server_error_is_masked_to_a_request_id(
    prod_server: Server, alice: Tokens
) -> None:
    # A real unhandled exception in the live server: a well-signed token whose `exp` is a
    # numeric string passes PyJWT and then breaks the app's own claim handling (see the
    # xfail in test_jwt_attacks.py). Whatever the fix, the caller must never see more than
    # UNAUTHENTICATED, or INTERNAL with a request id (and that id in the server log).
    claims = {**unverified_claims(alice.access), "exp": str(int(time.time()) + 600)}
    token = forge({"alg": "HS256", "typ": "JWT"}, claims, prod_server.jwt_secret.encode())
    response = prod_server.post("{ me { email } }", token=token)
    _assert_clean("string exp", response)
    body = response.json()
    assert (body.get("data") or {}).get("me") is None, body
    [error] = errors_of(body)
    assert error["extensions"]["code"] in ("UNAUTHENTICATED", "INTERNAL"), error
    if error["extensions"]["code"] == "INTERNAL":
        request_id = error["extensions"]["requestId"]
        assert request_id == response.headers["x-request-id"]
        assert (
            error["message"] == f"Internal error. Quote request id {request_id} when reporting it."
        )
        # The log line carries the id; app/logging_setup.py's code scrubber currently masks
        # any 16-symbol token, the request id included (abcd-****-****-wxyz): accepted here,
        # reported as an operability bug.
        forms = (request_id, f"{request_id[:4]}-****-****-{request_id[-4:]}")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            log = prod_server.stderr_tail(500_000)
            if any(f'"request_id": "{form}"' in log for form in forms):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"no server log line for request id {request_id}")


def test_server_header_does_not_leak_versions(prod_server: Server) -> None:
    seen: dict[str, str] = {}
    for method, path in (("GET", "/healthz"), ("POST", "/graphql"), ("GET", "/nope")):
        response = httpx.request(
            method, prod_server.base_url + path, json={"query": "{ __typename }"}, timeout=10.0
        )
        for name in ("server", "x-powered-by", "via", "x-aspnet-version", "x-runtime"):
            if name in response.headers:
                seen[name] = response.headers[name]
    assert "x-powered-by" not in seen, seen
    for name, value in seen.items():
        assert not re.search(r"\d+\.\d+", value), f"{name}: {value} discloses a version"
    notes = [f"{name}: {value}" for name, value in sorted(seen.items())]
    if seen.get("server", "").lower() == "uvicorn":
        notes.append("REPORT (not a failure): uvicorn's default `server: uvicorn` is sent")
    record("security_stage_headers.txt", ["response headers that name software:", *notes])


def test_websocket_applies_the_same_hardening(prod_server: Server) -> None:
    # Queries and mutations also run over graphql-transport-ws: the same validation applies.
    token = prod_server.login("alice@example.com").access

    async def run(queries: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with websockets.connect(prod_server.ws_url, subprotocols=[GRAPHQL_WS]) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
                )
            )
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            for i, query in enumerate(queries):
                await ws.send(
                    json.dumps({"id": str(i), "type": "subscribe", "payload": {"query": query}})
                )
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if message["type"] in ("next", "error"):
                        out.append(message)
                    if message["type"] in ("complete", "error"):
                        break
        return out

    answers = asyncio.run(
        run(
            [
                "{ __schema { types { name } } }",
                "query { " + " ".join(f"a{i}: __typename" for i in range(101)) + " }",
                "query { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }",
                "query { " + "__typename " * 500 + "}",
                '{ ordr(code: "x") { code } }',
                "{ me { email } }",  # control
            ]
        )
    )
    *refused, control = answers
    for message in refused:
        assert message["type"] == "error", message
        assert "did you mean" not in json.dumps(message).lower()
    assert len(refused[2]["payload"]) == 1, refused[2]  # directive overloading: one error
    assert control["payload"] == {"data": {"me": {"email": "alice@example.com"}}}
