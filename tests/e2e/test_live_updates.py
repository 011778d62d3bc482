"""orderUpdates over a real WebSocket (graphql-transport-ws, gql's websockets transport)
against the real server: a signed carrier event reaches the owner within a second; another
customer is refused exactly like an unknown code; logout ends the stream."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from app.security import codes
from app.settings import DEV_CARRIER_SECRET
from scripts.carrier_client import event_body, signed_headers
from tests.e2e.conftest import THROUGH_REDIS, Api, LiveServer

# On Redis: a test waits until Redis counts the subscription before it fires the event.
pytestmark = [pytest.mark.e2e, THROUGH_REDIS]

SUBSCRIBE = """
subscription Follow($code: String!) {
  orderUpdates(code: $code) {
    type
    order { code status shipments { trackingNumber status events { status location } } }
  }
}
"""
SHIPPED = "{ myOrders(filter: {status: [SHIPPED]}) { edges { node { code } } } }"


def ws_client(server: LiveServer, token: str) -> Client:
    url = server.base_url.replace("http://", "ws://") + "/graphql"
    transport = WebsocketsTransport(
        url=url,
        init_payload={"Authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


def post_event(server: LiveServer, tracking: str, status: str) -> None:
    body = event_body(
        carrier="DHL",
        tracking_number=tracking,
        status=status,
        location="Leipzig Hub",
        event_id=f"e2e-{uuid.uuid4().hex}",
    )
    response = httpx.post(
        f"{server.base_url}/webhooks/carrier",
        content=body,
        headers=signed_headers(DEV_CARRIER_SECRET, body),
        timeout=10,
    )
    assert response.status_code == 202


async def first_update(
    server: LiveServer, client: Client, code: str, trigger: Callable[[], None]
) -> tuple[Any, float]:
    following = await server.following(code)
    async with client as session:
        updates = session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"code": code}))
        # Once the server has registered the subscription, fire the event.
        loop = asyncio.get_running_loop()
        started = time.monotonic()

        async def fire() -> None:
            await server.wait_until_following(code, following + 1)
            nonlocal started
            started = time.monotonic()
            await loop.run_in_executor(None, trigger)

        task = asyncio.create_task(fire())
        update = await asyncio.wait_for(updates.__anext__(), timeout=10)
        await task
        return update, time.monotonic() - started


async def test_a_signed_carrier_event_reaches_the_owner_within_a_second(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str]
) -> None:
    token = login("alice@example.com")
    code = api(token).data(SHIPPED)["myOrders"]["edges"][0]["node"]["code"]
    update, latency = await first_update(
        live_server,
        ws_client(live_server, token),
        code,
        lambda: post_event(live_server, "DEMO-ALICE-2", "OUT_FOR_DELIVERY"),
    )
    print(f"\nlive update latency: {latency * 1000:.0f} ms")
    assert update["orderUpdates"]["type"] == "TRACKING_EVENT"
    shipment = update["orderUpdates"]["order"]["shipments"][0]
    assert shipment["status"] == "OUT_FOR_DELIVERY"
    assert shipment["events"][0]["location"] == "Leipzig Hub"
    assert latency < 1.0


async def updates_after(
    server: LiveServer, client: Client, code: str, trigger: Callable[[], None], count: int
) -> list[Any]:
    """The first `count` updates after `trigger` fires (once the subscription is registered)."""
    following = await server.following(code)
    async with client as session:
        updates = session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"code": code}))
        loop = asyncio.get_running_loop()

        async def fire() -> None:
            await server.wait_until_following(code, following + 1)
            await loop.run_in_executor(None, trigger)

        task = asyncio.create_task(fire())
        got = [await asyncio.wait_for(updates.__anext__(), timeout=10) for _ in range(count)]
        await task
        return got


def deliveries_total(server: LiveServer, carrier: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    prefix = f'orders_api_deliveries_total{{carrier="{carrier}",'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


async def test_a_delivery_reaches_the_owner_as_a_status_change_with_its_date_and_promise(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str]
) -> None:
    # given alice follows her shipped order on the real server
    token = login("alice@example.com")
    code = api(token).data(SHIPPED)["myOrders"]["edges"][0]["node"]["code"]
    counted = deliveries_total(live_server, "DHL")
    # when the carrier's signed DELIVERED event moves it SHIPPED -> DELIVERED
    got = await updates_after(
        live_server,
        ws_client(live_server, token),
        code,
        lambda: post_event(live_server, "DEMO-ALICE-2", "DELIVERED"),
        2,
    )
    # then she hears of the tracking event and of the status change
    assert [u["orderUpdates"]["type"] for u in got] == ["TRACKING_EVENT", "STATUS_CHANGED"]
    assert {u["orderUpdates"]["order"]["status"] for u in got} == {"DELIVERED"}
    # and the order shows the promise beside the actual delivery; the parcel its date
    order = api(token).data(
        "query($c: String!) { order(code: $c) { promisedDelivery deliveredAt deliveredOnTime"
        " shipments { deliveredAt } } }",
        c=code,
    )["order"]
    assert order["promisedDelivery"] and order["deliveredAt"]
    assert order["deliveredOnTime"] in (True, False)
    assert order["shipments"][0]["deliveredAt"] == order["deliveredAt"]
    # and /metrics counted one more DHL delivery
    assert deliveries_total(live_server, "DHL") == counted + 1


async def refusal(client: Client, code: str) -> list[dict[str, Any]]:
    async with client as session:
        with pytest.raises(TransportQueryError) as caught:
            async for _ in session.subscribe(
                GraphQLRequest(SUBSCRIBE, variable_values={"code": code})
            ):
                pass
    errors = caught.value.errors or []
    return [{k: v for k, v in e.items() if k != "locations"} for e in errors]


async def test_another_customer_is_refused_exactly_like_an_unknown_code(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str]
) -> None:
    alice = login("alice@example.com")
    code = api(alice).data(SHIPPED)["myOrders"]["edges"][0]["node"]["code"]
    bob = login("bob@example.com")
    theirs = await refusal(ws_client(live_server, bob), code)
    unknown = await refusal(ws_client(live_server, bob), codes.generate())
    assert theirs[0]["extensions"]["code"] == "ORDER_NOT_FOUND"
    assert theirs == unknown


async def test_logout_ends_the_stream(
    live_server: LiveServer, api: Callable[..., Api], login: Callable[[str], str]
) -> None:
    token = login("alice@example.com")
    code = api(token).data(SHIPPED)["myOrders"]["edges"][0]["node"]["code"]

    async def follow_then_logout() -> list[Any]:
        received: list[Any] = []
        following = await live_server.following(code)
        async with ws_client(live_server, token) as session:

            async def consume() -> None:
                async for update in session.subscribe(
                    GraphQLRequest(SUBSCRIBE, variable_values={"code": code})
                ):
                    received.append(update)

            task = asyncio.create_task(consume())
            await live_server.wait_until_following(code, following + 1)
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: api(token).data("mutation { logout { ok } }")
            )
            await asyncio.wait_for(task, timeout=5)  # the server completed the stream
        return received

    assert await follow_then_logout() == []
