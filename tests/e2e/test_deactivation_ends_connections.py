"""Deactivating a staff account ends its live WebSocket connection, against the real server
over a real socket.

Only customers hold subscriptions (`orderUpdates` is owner-only: a staff account owns no
order, and a customer's running stream closing on logout is covered in
test_live_updates.py). What a staff account can hold is the connection itself:
acknowledged, kept open, and used for queries and mutations (graphql-transport-ws runs any
operation; the legacy graphql-ws only subscriptions). Before app/graphql/ws_sessions.py the
viewer resolved at connection_init was trusted for the connection's whole life, so a
deactivated support agent kept searching customers' orders over a socket opened before, and
a customer who logged out everywhere could start new subscriptions over an old socket. Now
the next operation closes the connection the way a bad token at connection_init does
(graphql-transport-ws: 4403 Forbidden; graphql-ws: connection_error, then 1011) and
nothing is answered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import Api, LiveServer

pytestmark = [pytest.mark.e2e]

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
ME = "query Me { me { email role } }"
SEARCH = (
    "query Search($email: String!, $reason: String!) { "
    "supportSearch(customerEmail: $email, reason: $reason, first: 5) { code } }"
)
DEACTIVATE = (
    "mutation Deactivate($email: String!) { deactivateUser(email: $email) "
    "{ user { email active } userErrors { code message } } }"
)
FOLLOW = "subscription Follow($code: String!) { orderUpdates(code: $code) { type } }"
SHIPPED = "{ myOrders(filter: {status: [SHIPPED]}) { edges { node { code } } } }"
ANSWER_TIMEOUT = 10.0


class Socket:
    """One graphql-transport-ws (or graphql-ws) connection, message by message."""

    def __init__(self, server: LiveServer, token: str, protocol: str = TRANSPORT_WS) -> None:
        self.url = server.base_url.replace("http://", "ws://") + "/graphql"
        self.token = token
        self.protocol = protocol
        self.ws: Any = None
        self.next_id = 0

    async def __aenter__(self) -> Socket:
        self.ws = await websockets.connect(self.url, subprotocols=[self.protocol])  # type: ignore[list-item]
        await self.send(
            {"type": "connection_init", "payload": {"Authorization": f"Bearer {self.token}"}}
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.ws.close()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), ANSWER_TIMEOUT))
        return message

    async def acknowledged(self) -> None:
        assert (await self.receive())["type"] == "connection_ack"

    async def operation(self, query: str, **variables: Any) -> list[dict[str, Any]]:
        """Run one operation; every message about it up to its completion."""
        self.next_id += 1
        op_id = str(self.next_id)
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send(
            {"id": op_id, "type": kind, "payload": {"query": query, "variables": variables}}
        )
        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] not in ("complete", "error"):
            message = await self.receive()
            if message.get("type") == "ka":
                continue
            messages.append(message)
        return messages

    async def start(self, query: str, **variables: Any) -> None:
        """Send an operation without waiting for its answer."""
        self.next_id += 1
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables}
        await self.send({"id": str(self.next_id), "type": kind, "payload": payload})

    async def closed_with(self) -> tuple[int | None, list[dict[str, Any]]]:
        """Whatever the server still sends, then the close code it ended with (None if it
        kept the connection open)."""
        said: list[dict[str, Any]] = []
        try:
            while True:
                said.append(await self.receive())
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else None), said
        except TimeoutError:
            return None, said  # still open: the assertion shows what it answered


async def over_http(caller: Api, query: str, **variables: Any) -> dict[str, Any]:
    """A call of the (blocking) HTTP client, off this test's event loop."""
    return await asyncio.get_running_loop().run_in_executor(
        None, lambda: caller.data(query, **variables)
    )


def assert_refused(protocol: str, code: int | None, said: list[dict[str, Any]]) -> None:
    """Closed as at connection_init with an ended session; nothing answered."""
    if protocol == TRANSPORT_WS:
        assert (code, said) == (4403, [])
    else:
        assert code == 1011 and [m["type"] for m in said] == ["connection_error"]


def test_deactivation_ends_the_staff_accounts_open_connection(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str]
) -> None:
    support = login("support@example.com")
    admin_token = login("admin@example.com")

    async def scenario() -> None:
        async with Socket(live_server, admin_token) as admin_socket:
            await admin_socket.acknowledged()
            async with Socket(live_server, support) as socket:
                await socket.acknowledged()
                # the connection serves the agent: who they are, an audited staff search
                before = await socket.operation(ME)
                assert before[0]["payload"]["data"]["me"] == {
                    "email": "support@example.com",
                    "role": "SUPPORT",
                }
                found = await socket.operation(SEARCH, email="alice@example.com", reason="T-1")
                assert found[0]["payload"]["data"]["supportSearch"], found

                answer = await over_http(api(admin_token), DEACTIVATE, email="support@example.com")
                assert answer["deactivateUser"] == {
                    "user": {"email": "support@example.com", "active": False},
                    "userErrors": [],
                }

                # the same socket, the next operation: closed, nothing answered
                await socket.start(SEARCH, email="alice@example.com", reason="T-2")
                assert_refused(TRANSPORT_WS, *await socket.closed_with())

            # a new connection with the old token is refused at connection_init
            async with Socket(live_server, support) as again:
                code, said = await again.closed_with()
                assert (code, said) == (4403, [])

            # the admin's connection, opened before, still works
            me = await admin_socket.operation(ME)
            assert me[0]["payload"]["data"]["me"]["email"] == "admin@example.com"

    asyncio.run(scenario())


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
def test_after_logout_everywhere_an_old_connection_starts_no_subscription(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str], protocol: str
) -> None:
    alice = login("alice@example.com")
    code = api(alice).data(SHIPPED)["myOrders"]["edges"][0]["node"]["code"]

    async def scenario() -> None:
        async with Socket(live_server, alice, protocol) as socket:
            await socket.acknowledged()
            ended = await over_http(api(alice), "mutation { logoutAll { ok } }")
            assert ended["logoutAll"]["ok"] is True
            await socket.start(FOLLOW, code=code)
            assert_refused(protocol, *await socket.closed_with())

    asyncio.run(scenario())
