"""A mobile app's view of the Orders API, with `gql` (pip install "gql[httpx,websockets]").

What an app does: log in once, keep the token pair, refresh the short-lived access token
before it expires (or when the server says UNAUTHENTICATED), list the orders, and follow
one live over WebSocket (graphql-transport-ws, the token sent in connection_init).
No cookies and no Origin header: CORS does not apply to apps, the bearer token is all.

    python examples/mobile_client.py --url http://127.0.0.1:8000/graphql \\
        --email alice@example.com --password orders-demo-2026 --follow 1

tests/e2e/test_mobile_client.py runs this against the real server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport
from gql.transport.websockets import WebsocketsTransport

LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    tokens { accessToken refreshToken expiresIn }
    userErrors { field message code }
  }
}
"""
REFRESH = """
mutation Refresh($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) {
    tokens { accessToken refreshToken expiresIn }
    userErrors { field message code }
  }
}
"""
MY_ORDERS = """
query MyOrders($first: Int) {
  myOrders(first: $first) {
    edges { node { code status placedAt total { amount currency } } }
  }
}
"""
FOLLOW = """
subscription FollowOrder($code: String!) {
  orderUpdates(code: $code) {
    type
    order { code status shipments { trackingNumber status events { status location } } }
  }
}
"""
REFRESH_MARGIN_SECONDS = 30  # refresh this long before the access token expires


class LoginFailed(Exception):
    pass


@dataclass
class Tokens:
    access: str
    refresh: str
    expires_at: float  # time.monotonic() when the access token stops working

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Tokens:
        if payload["userErrors"] or not payload["tokens"]:
            raise LoginFailed(str(payload["userErrors"]))
        tokens = payload["tokens"]
        return cls(
            tokens["accessToken"],
            tokens["refreshToken"],
            time.monotonic() + tokens["expiresIn"],
        )


class OrdersClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.tokens: Tokens | None = None

    def _client(self, token: str | None) -> Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return Client(
            transport=HTTPXTransport(url=self.url, headers=headers, timeout=15.0),
            fetch_schema_from_transport=False,
        )

    def _send(self, query: str, variables: dict[str, Any], token: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self._client(token).execute(
            GraphQLRequest(query, variable_values=variables)
        )
        return result

    def login(self, email: str, password: str) -> None:
        payload = self._send(LOGIN, {"email": email, "password": password}, None)["login"]
        self.tokens = Tokens.from_payload(payload)

    def refresh(self) -> None:
        """Rotate the pair. The old refresh token is spent: never send it again."""
        assert self.tokens is not None, "log in first"
        payload = self._send(REFRESH, {"refreshToken": self.tokens.refresh}, None)
        self.tokens = Tokens.from_payload(payload["refreshToken"])

    def access_token(self) -> str:
        """A usable access token: refreshed first when it is about to expire."""
        assert self.tokens is not None, "log in first"
        if time.monotonic() >= self.tokens.expires_at - REFRESH_MARGIN_SECONDS:
            self.refresh()
        assert self.tokens is not None
        return self.tokens.access

    def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        """Run an operation as the logged-in user; on UNAUTHENTICATED (the token expired
        early, e.g. the clock is off) refresh once and try again."""
        try:
            return self._send(query, variables, self.access_token())
        except TransportQueryError as error:
            codes = [(e.get("extensions") or {}).get("code") for e in error.errors or []]
            if "UNAUTHENTICATED" not in codes:
                raise
        self.refresh()
        return self._send(query, variables, self.access_token())

    def my_orders(self, first: int = 10) -> list[dict[str, Any]]:
        edges = self.execute(MY_ORDERS, first=first)["myOrders"]["edges"]
        return [edge["node"] for edge in edges]

    async def follow(self, code: str) -> AsyncIterator[dict[str, Any]]:
        """Each change of the order as it happens (until the server ends the stream)."""
        transport = WebsocketsTransport(
            url=self.url.replace("http", "ws", 1),
            init_payload={"Authorization": f"Bearer {self.access_token()}"},
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        async with Client(transport=transport, fetch_schema_from_transport=False) as session:
            request = GraphQLRequest(FOLLOW, variable_values={"code": code})
            async for update in session.subscribe(request):
                yield update["orderUpdates"]


async def _follow(client: OrdersClient, code: str, count: int) -> None:
    received = 0
    # aclosing: leaving the loop early closes the WebSocket at once
    async with contextlib.aclosing(client.follow(code)) as updates:
        async for update in updates:
            print(f"{update['type']}: {update['order']['status']}")
            received += 1
            if received >= count:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/graphql")
    parser.add_argument("--email", default="alice@example.com")
    parser.add_argument("--password", default="orders-demo-2026")
    parser.add_argument("--follow", type=int, default=0, help="updates to wait for")
    args = parser.parse_args()
    client = OrdersClient(args.url)
    client.login(args.email, args.password)
    orders = client.my_orders()
    for order in orders:
        print(f"{order['code']}  {order['status']:<10}  {order['placedAt']}")
    if args.follow and orders:
        print(f"following {orders[0]['code']} …", flush=True)
        asyncio.run(_follow(client, orders[0]["code"], args.follow))


if __name__ == "__main__":
    main()
