"""Operations hygiene, read from the real server process's stderr: every line is JSON
without ANSI escapes (no uvicorn `color_message`), one access line per HTTP request and per
WebSocket operation with method, path, status, duration, operation name, request id and the
masked user, and the `user` field masked the same way in every line that carries one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from app.logging_setup import mask_user
from app.security import codes
from tests.e2e.conftest import DEMO_PASSWORD, THROUGH_REDIS, LiveServer

pytestmark = pytest.mark.e2e

LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { tokens { accessToken } }
}
"""
ORDER = "query Order($code: String!) { order(code: $code) { code status } }"
FOLLOW = "subscription FollowOrder($code: String!) { orderUpdates(code: $code) { type } }"


def server_lines(server: LiveServer) -> list[dict[str, Any]]:
    text = server.stderr_text()
    assert "\x1b" not in text, "ANSI escapes in the server's log"
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            pytest.fail(f"a log line that is not JSON: {raw!r}")
    return lines


def access_lines(server: LiveServer, message: str) -> list[dict[str, Any]]:
    return [
        line
        for line in server_lines(server)
        if line["logger"] == "app.access" and line["message"] == message
    ]


def wait_for_lines(server: LiveServer, message: str, ids: set[str]) -> list[dict[str, Any]]:
    """The access lines of `message`, once lines with all of `ids` (request ids) are there."""
    deadline = time.monotonic() + 5.0
    while True:
        lines = access_lines(server, message)
        if ids <= {line["request_id"] for line in lines} or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def public_id(server: LiveServer, email: str) -> str:
    path = server.env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT public_id FROM users WHERE email = ?", (email,)).fetchone()
    return str(row[0])


def post(server: LiveServer, body: Any, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(server.graphql_url, json=body, headers=headers, timeout=10)


def test_one_masked_json_access_line_per_http_request(live_server: LiveServer) -> None:
    # given alice logged in (an anonymous request), then her lookups: one of her orders,
    # one code that is nobody's (a failed lookup is logged with the user), an anonymous
    # document and a body the guard refuses
    login = post(
        live_server,
        {"query": LOGIN, "variables": {"email": "alice@example.com", "password": DEMO_PASSWORD}},
    )
    token = login.json()["data"]["login"]["tokens"]["accessToken"]
    mine = post(
        live_server, {"query": "query MyOrders { myOrders { edges { node { code } } } }"}, token
    )
    code = mine.json()["data"]["myOrders"]["edges"][0]["node"]["code"]
    found = post(live_server, {"query": ORDER, "variables": {"code": code}}, token)
    unknown = post(
        live_server,
        {"query": ORDER, "variables": {"code": codes.generate()}, "operationName": "Order"},
        token,
    )
    anonymous = post(live_server, {"query": "{ products(first: 1) { edges { cursor } } }"})
    refused = httpx.post(live_server.graphql_url, content=b"[1", timeout=10)
    health = httpx.get(f"{live_server.base_url}/healthz", timeout=10)
    assert refused.status_code == 415 and health.status_code == 200
    responses = [login, mine, found, unknown, anonymous, refused, health]

    # when the server has written its lines
    ids = [response.headers["x-request-id"] for response in responses]
    lines = wait_for_lines(live_server, "http", set(ids))
    by_id = {line["request_id"]: line for line in lines}

    # then there is exactly one line per request, found by the request id it answered with
    assert len(set(ids)) == len(ids) and all(i in by_id for i in ids), (ids, lines)
    logged = [line["request_id"] for line in lines]
    assert all(logged.count(request_id) == 1 for request_id in ids)
    alice = mask_user(public_id(live_server, "alice@example.com"))
    expected = [
        ("POST", "/graphql", 200, "Login", None),
        ("POST", "/graphql", 200, "MyOrders", alice),
        ("POST", "/graphql", 200, "Order", alice),
        ("POST", "/graphql", 200, "Order", alice),
        ("POST", "/graphql", 200, None, None),
        ("POST", "/graphql", 415, None, None),
        ("GET", "/healthz", 200, None, None),
    ]
    for request_id, (method, path, status, operation, user) in zip(ids, expected, strict=True):
        line = by_id[request_id]
        assert (line["method"], line["path"], line["status"]) == (method, path, status), line
        assert (line["operation"], line["user"]) == (operation, user), line
        assert isinstance(line["duration_ms"], float) and 0 <= line["duration_ms"] < 10_000
    # the user is masked, and masked the same way in every line that carries one
    raw = public_id(live_server, "alice@example.com")
    everything = server_lines(live_server)
    assert raw not in json.dumps(everything)
    failed = [line for line in everything if line["message"] == "code lookup failed"]
    assert failed and {line["user"] for line in failed} == {alice}
    users = {line["user"] for line in everything if line.get("user")}
    assert users == {alice}, users
    # no uvicorn colour copies; uvicorn's start-up lines are JSON like the rest
    assert not [line for line in everything if "color_message" in line]
    assert any(line["logger"].startswith("uvicorn") for line in everything)


@THROUGH_REDIS  # the test waits until Redis counts the subscription
async def test_one_access_line_per_websocket_operation(live_server: LiveServer) -> None:
    # given alice and the code of one of her orders
    login = await asyncio.to_thread(
        post,
        live_server,
        {"query": LOGIN, "variables": {"email": "alice@example.com", "password": DEMO_PASSWORD}},
    )
    token = login.json()["data"]["login"]["tokens"]["accessToken"]
    mine = await asyncio.to_thread(
        post, live_server, {"query": "{ myOrders { edges { node { code } } } }"}, token
    )
    code = mine.json()["data"]["myOrders"]["edges"][0]["node"]["code"]
    transport = WebsocketsTransport(
        url=live_server.base_url.replace("http://", "ws://") + "/graphql",
        init_payload={"Authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    # when, on one connection, she runs a query, starts a subscription with a typo in the
    # code (the server ends it with an error) and starts one she then stops herself
    async with Client(transport=transport) as session:
        await session.execute(GraphQLRequest(ORDER, variable_values={"code": code}))
        with pytest.raises(Exception, match=r"INVALID_ORDER_CODE|order code"):
            async for _ in session.subscribe(
                GraphQLRequest(FOLLOW, variable_values={"code": "ABCD"})
            ):
                pass
        following = await live_server.following(code)
        updates = session.subscribe(GraphQLRequest(FOLLOW, variable_values={"code": code}))
        waiting = asyncio.ensure_future(updates.__anext__())
        await live_server.wait_until_following(code, following + 1)
        waiting.cancel()  # gql stops the subscription: `complete` from the client
        with contextlib.suppress(asyncio.CancelledError):
            await waiting

    # then one line per operation, and one for the connection when it closed
    await asyncio.sleep(0.3)  # the connection's line is written as the server closes it
    lines = access_lines(live_server, "ws")
    alice = mask_user(public_id(live_server, "alice@example.com"))
    operations = [line for line in lines if line["operation"] is not None]
    assert [(line["operation"], line["status"]) for line in operations] == [
        ("Order", "complete"),
        ("FollowOrder", "complete"),
        ("FollowOrder", "cancelled"),
    ], lines
    assert operations[1]["error"] == "INVALID_ORDER_CODE"
    (connection,) = [line for line in lines if line["operation"] is None]
    assert connection["status"] == 1000
    for line in lines:
        assert (line["method"], line["path"], line["user"]) == ("WS", "/graphql", alice), line
        assert line["request_id"] == connection["request_id"] and len(line["request_id"]) == 12
        assert line["duration_ms"] >= 0
