"""Hostile bytes against the real server in production mode (issue 14's findings 4 and 5):

- a lone UTF-16 surrogate (`"\\ud800"`, valid JSON) in the string arguments the outside
  probe found answering INTERNAL — login, register, myOrders(filter.text), startCheckout's
  address, supportOrder(reason) — over HTTP and WebSocket: BAD_USER_INPUT naming the
  variable or argument (the schema-wide walk is tests/security/test_hostile_input.py);
- a WebSocket frame of 20,000 nested `[` (40 KB, under the 64 KiB frame cap), bare or as a
  `subscribe` (which the access log parses too), before and after `connection_ack`: the
  socket is closed with 4400 and a reason, the server logs no exception and keeps serving.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.security_stage.conftest import Server, Tokens

pytestmark = pytest.mark.e2e

GRAPHQL_WS = Subprotocol("graphql-transport-ws")
SURROGATE = "\ud800"
ADDRESS = {"name": "A", "line1": "1 Demo Street", "city": "Berlin", "postalCode": "10115"}

# (label, document, variables, the field the error names); the caller is SUPPORT, who may
# call every one of them
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "login email",
        'mutation L($e: String!) { login(email: $e, password: "x") { userErrors { code } } }',
        {"e": f"a{SURROGATE}@example.com"},
        "$e",
    ),
    (
        "login password, inline",
        f'mutation L {{ login(email: "a@example.com", password: "{SURROGATE}") '
        "{ userErrors { code } } }",
        {},
        "login.password",
    ),
    (
        "register name",
        "mutation R($i: RegisterInput!) { register(input: $i) { userErrors { code } } }",
        {"i": {"email": "r@example.com", "password": "long-enough-pw-1", "name": SURROGATE}},
        "$i.name",
    ),
    (
        "myOrders filter text",
        "query M($f: OrderFilterInput) { myOrders(filter: $f) { pageInfo { hasNextPage } } }",
        {"f": {"text": f"mug{SURROGATE}"}},
        "$f.text",
    ),
    (
        "startCheckout address line1",
        'mutation S($a: AddressInput!) { startCheckout(lines: [{sku: "MUG-001", quantity: 1}], '
        "shippingAddress: $a) { userErrors { code } } }",
        {"a": {**ADDRESS, "country": "DE", "line1": f"1 Demo{SURROGATE} Street"}},
        "$a.line1",
    ),
    (
        "startCheckout address city, inline",
        'mutation S { startCheckout(lines: [{sku: "MUG-001", quantity: 1}], shippingAddress: '
        f'{{name: "A", line1: "1", city: "{SURROGATE}", postalCode: "1", country: "DE"}}) '
        "{ userErrors { code } } }",
        {},
        "startCheckout.shippingAddress.city",
    ),
    (
        "supportOrder reason",
        'query S($r: String!) { supportOrder(code: "7QKM-3XD2-9HAV-P4T9", reason: $r) '
        "{ customer { email } } }",
        {"r": f"TICKET{SURROGATE}"},
        "$r",
    ),
]


def post_ascii(server: Server, request: dict[str, Any], token: str) -> httpx.Response:
    """The request as ASCII JSON: the surrogate travels as the escape \\ud800."""
    return httpx.post(
        server.graphql_url,
        content=json.dumps(request).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        timeout=30.0,
    )


def assert_names(errors: list[dict[str, Any]], field: str, label: str) -> None:
    assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], f"{label}: {errors}"
    assert errors[0]["extensions"]["field"] == field, f"{label}: {errors}"


@pytest.fixture(scope="module")
def support(prod_server: Server) -> Tokens:
    return prod_server.login("support@example.com")


@pytest.mark.parametrize(("label", "query", "variables", "field"), CASES, ids=[c[0] for c in CASES])
def test_a_lone_surrogate_is_bad_user_input_over_http(
    prod_server: Server,
    support: Tokens,
    label: str,
    query: str,
    variables: dict[str, Any],
    field: str,
) -> None:
    response = post_ascii(prod_server, {"query": query, "variables": variables}, support.access)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] is None, body
    assert_names(body["errors"], field, label)


def test_a_lone_surrogate_is_bad_user_input_over_websocket(
    prod_server: Server, support: Tokens
) -> None:
    async def run() -> list[dict[str, Any]]:
        async with websockets.connect(prod_server.ws_url, subprotocols=[GRAPHQL_WS]) as ws:
            init = {"Authorization": f"Bearer {support.access}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            answers = []
            for number, (_, query, variables, _) in enumerate(CASES):
                payload = {"query": query, "variables": variables}
                await ws.send(
                    json.dumps({"id": str(number), "type": "subscribe", "payload": payload})
                )
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            # still open, still serving
            await ws.send(
                json.dumps(
                    {"id": "ok", "type": "subscribe", "payload": {"query": "{ me { email } }"}}
                )
            )
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return answers

    answers = asyncio.run(run())
    for number, (label, _, _, field) in enumerate(CASES):
        assert answers[number]["id"] == str(number), answers[number]
        assert answers[number]["type"] == "error", f"{label}: {answers[number]}"
        assert_names(answers[number]["payload"], field, label)
    assert answers[-1]["payload"] == {"data": {"me": {"email": "support@example.com"}}}


DEEP = "[" * 20_000 + "]" * 20_000  # 40,000 bytes: under the 64 KiB frame cap
DEEP_SUBSCRIBE = (
    '{"id": "1", "type": "subscribe", "payload": {"query": "{ __typename }", "variables": '
    '{"x": ' + "[" * 12_000 + "]" * 12_000 + "}}}"
)


async def close_after(server: Server, frames: list[str], token: str | None) -> tuple[int, str]:
    """Connect (and init with `token`, if any), send `frames`, return the close code and
    reason the server closed with."""
    async with websockets.connect(server.ws_url, subprotocols=[GRAPHQL_WS]) as ws:
        if token is not None:
            init = {"Authorization": f"Bearer {token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
        for frame in frames:
            await ws.send(frame)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason


@pytest.mark.parametrize(
    ("label", "frame", "after_ack"),
    [
        ("bare, before connection_init", DEEP, False),
        ("bare, after connection_ack", DEEP, True),
        ("as a subscribe, after connection_ack", DEEP_SUBSCRIBE, True),
        ("object nesting", '{"a":' * 10_000 + "1" + "}" * 10_000, True),
    ],
)
def test_a_deeply_nested_frame_closes_the_socket_with_4400_and_a_reason(
    prod_server: Server, support: Tokens, label: str, frame: str, after_ack: bool
) -> None:
    assert len(frame.encode()) < 64 * 1024, "the frame must be under the frame cap"
    before = prod_server.stderr_tail(200_000)
    code, reason = asyncio.run(
        close_after(prod_server, [frame], support.access if after_ack else None)
    )
    assert code == 4400, (label, code, reason)
    assert "nested" in reason.lower(), (label, reason)
    # no exception in the server's log, and it still answers
    after = prod_server.stderr_tail(200_000)[len(before) :]
    assert "RecursionError" not in after and "Traceback" not in after, after[-3000:]
    assert '"level": "ERROR"' not in after.replace('"level":"ERROR"', '"level": "ERROR"'), after
    assert prod_server.gql("{ __typename }") == {"data": {"__typename": "Query"}}
