"""Two instances, one PostgreSQL, one Redis: what a load balancer in front of N instances
must not change. Every request crosses a socket; figures are printed (run with -s)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from app.security import codes
from app.settings import DEV_CARRIER_SECRET
from scripts.carrier_client import event_body, signed_headers
from tests.e2e.conftest import DEMO_PASSWORD, LiveServer
from tests.scale.conftest import Cluster
from tests.support.subscriptions import channel_subscribers, wait_for_channel_subscribers

pytestmark = pytest.mark.e2e

ADDRESS = {
    "name": "Scale Tester",
    "line1": "1 Load Street",
    "city": "Berlin",
    "postalCode": "10115",
    "country": "DE",
}
REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) { tokens { accessToken } userErrors { code message } }
}"""
LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { tokens { accessToken } userErrors { code } }
}"""
ORDER = "query Order($code: String!) { order(code: $code) { code } }"
PLACE = """
mutation Place($lines: [OrderLineInput!], $address: AddressInput, $key: String) {
  placeOrder(lines: $lines, shippingAddress: $address, paymentToken: "tok_visa",
             idempotencyKey: $key) {
    order { code }
    userErrors { field message code }
  }
}"""
SUBSCRIBE = """
subscription Follow($code: String!) {
  orderUpdates(code: $code) { type order { shipments { trackingNumber status } } }
}"""
SHIPPED = "{ myOrders(filter: {status: [SHIPPED]}) { edges { node { code } } } }"


async def post(
    http: httpx.AsyncClient,
    server: LiveServer,
    query: str,
    token: str | None = None,
    **variables: Any,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post(
        server.graphql_url, json={"query": query, "variables": variables}, headers=headers
    )
    return response.status_code, response.json()


def codes_of(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


async def login(http: httpx.AsyncClient, server: LiveServer, email: str) -> str:
    status, body = await post(http, server, LOGIN, email=email, password=DEMO_PASSWORD)
    assert status == 200 and body["data"]["login"]["userErrors"] == [], body
    token: str = body["data"]["login"]["tokens"]["accessToken"]
    return token


async def register(http: httpx.AsyncClient, cluster: Cluster, n: int) -> list[str]:
    """n new customers, registered alternately on A and B; their access tokens."""

    async def one(i: int) -> str:
        email = f"scale-{uuid.uuid4().hex[:10]}@example.com"
        _, body = await post(
            http,
            cluster.instances[i % 2],
            REGISTER,
            input={"email": email, "password": "scale-test-password-1", "name": "Scale"},
        )
        assert body["data"]["register"]["userErrors"] == [], body
        token: str = body["data"]["register"]["tokens"]["accessToken"]
        return token

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def ws_client(server: LiveServer, token: str) -> Client:
    transport = WebsocketsTransport(
        url=server.base_url.replace("http://", "ws://") + "/graphql",
        init_payload={"Authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


async def test_a_rate_limit_is_one_budget_across_instances(cluster: Cluster) -> None:
    # given an attacker with RATE_LOOKUPS_PER_USER=10/minute and two instances to pick from
    async with httpx.AsyncClient(timeout=30) as http:
        (token,) = await register(http, cluster, 1)
        # when they try 30 guessed codes within the window, alternating A, B, A, B...
        answers: list[tuple[str, str]] = []
        for attempt in range(30):
            name = "ab"[attempt % 2]
            _, body = await post(
                http, cluster.instances[attempt % 2], ORDER, token, code=codes.generate()
            )
            answers.append((name, codes_of(body)[0]))
    tried = [name for name, code in answers if code == "ORDER_NOT_FOUND"]
    limited = [name for name, code in answers if code == "RATE_LIMITED"]
    print(
        f"\none window, 30 attempts alternating A/B: {len(tried)} codes tried "
        f"(A {tried.count('a')}, B {tried.count('b')}), {len(limited)} rate limited "
        f"(A {limited.count('a')}, B {limited.count('b')})"
    )
    # then they got exactly one instance's budget, not one per instance (that would be 20)
    assert len(tried) == 10
    assert len(limited) == 20
    assert answers[:10] == [("ab"[i % 2], "ORDER_NOT_FOUND") for i in range(10)]
    assert {"a", "b"} <= set(limited)


async def test_an_event_accepted_by_one_instance_reaches_a_subscriber_on_the_other(
    cluster: Cluster,
) -> None:
    # given alice following her shipped order on instance B
    async with httpx.AsyncClient(timeout=30) as http:
        token = await login(http, cluster.b, "alice@example.com")
        _, body = await post(http, cluster.b, SHIPPED, token)
    code = body["data"]["myOrders"]["edges"][0]["node"]["code"]
    payload = event_body(
        carrier="DHL",
        tracking_number="DEMO-ALICE-2",
        status="OUT_FOR_DELIVERY",
        location="Leipzig Hub",
        event_id=f"scale-{uuid.uuid4().hex}",
    )
    channel = cluster.order_channel(code)
    following = await channel_subscribers(cluster.redis_url, channel)
    async with ws_client(cluster.b, token) as session, httpx.AsyncClient(timeout=10) as http:
        updates = session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"code": code}))
        first = asyncio.ensure_future(updates.__anext__())
        # the subscription is registered on B: Redis counts it on the order's channel
        await wait_for_channel_subscribers(cluster.redis_url, channel, following + 1)
        # when the carrier's signed event is accepted by instance A
        started = time.monotonic()
        response = await http.post(
            f"{cluster.a.base_url}/webhooks/carrier",
            content=payload,
            headers=signed_headers(DEV_CARRIER_SECRET, payload),
        )
        assert response.status_code == 202
        update = await asyncio.wait_for(first, timeout=5)
        latency = time.monotonic() - started
    print(f"\nwebhook on A -> subscriber on B: {latency * 1000:.0f} ms")
    # then the subscriber on B sees it within a second
    assert update["orderUpdates"]["type"] == "TRACKING_EVENT"
    shipment = update["orderUpdates"]["order"]["shipments"][0]
    assert (shipment["trackingNumber"], shipment["status"]) == ("DEMO-ALICE-2", "OUT_FOR_DELIVERY")
    assert latency < 1.0


async def test_logout_on_one_instance_ends_the_session_on_the_other_at_once(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        # given bob logged in on A, his token working on B, and a live stream open on B
        token = await login(http, cluster.a, "bob@example.com")
        _, body = await post(http, cluster.b, "{ me { email } }", token)
        assert body["data"]["me"]["email"] == "bob@example.com"
        _, body = await post(http, cluster.b, "{ myOrders { edges { node { code } } } }", token)
        code = body["data"]["myOrders"]["edges"][0]["node"]["code"]
        channel = cluster.order_channel(code)
        following = await channel_subscribers(cluster.redis_url, channel)
        async with ws_client(cluster.b, token) as session:
            received: list[Any] = []

            async def consume() -> None:
                async for update in session.subscribe(
                    GraphQLRequest(SUBSCRIBE, variable_values={"code": code})
                ):
                    received.append(update)

            stream = asyncio.create_task(consume())
            await wait_for_channel_subscribers(cluster.redis_url, channel, following + 1)
            # when he logs out on A
            started = time.monotonic()
            _, body = await post(http, cluster.a, "mutation { logout { ok } }", token)
            assert body["data"]["logout"]["ok"] is True
            # then B refuses the access token on the very next request
            status, body = await post(http, cluster.b, "{ me { email } }", token)
            refused_after = time.monotonic() - started
            assert codes_of(body) == ["UNAUTHENTICATED"], (status, body)
            # and B ends his live stream (the session event crossed Redis)
            await asyncio.wait_for(stream, timeout=3)
            closed_after = time.monotonic() - started
    print(
        f"\nlogout on A: token refused on B after {refused_after * 1000:.0f} ms, "
        f"stream on B closed after {closed_after * 1000:.0f} ms"
    )
    assert received == []


async def test_one_idempotency_key_sent_to_both_instances_at_once_is_one_order(
    cluster: Cluster,
) -> None:
    # given a customer and five keys, each to be sent to A and B at the same moment
    async with httpx.AsyncClient(timeout=30) as http:
        (token,) = await register(http, cluster, 1)
        charges_before = cluster.scalar("SELECT count(*) FROM test_provider_transactions")
        keys = [f"scale-idem-{uuid.uuid4().hex}" for _ in range(5)]
        lines = [{"sku": "MUG-001", "quantity": 1}]
        # when both instances get each key concurrently
        results = await asyncio.gather(
            *(
                post(http, server, PLACE, token, lines=lines, address=ADDRESS, key=key)
                for key in keys
                for server in cluster.instances
            )
        )
    # then every answer is a success, and the two answers for a key name the same order
    assert all(status == 200 and "errors" not in body for status, body in results), results
    order_codes = [body["data"]["placeOrder"]["order"]["code"] for _, body in results]
    pairs = list(zip(order_codes[::2], order_codes[1::2], strict=True))
    assert all(first == second for first, second in pairs), pairs
    orders = cluster.scalar("SELECT count(*) FROM orders WHERE idempotency_key = ANY(%s)", keys)
    charges = cluster.scalar("SELECT count(*) FROM test_provider_transactions")
    print(
        f"\n{len(keys)} keys x 2 instances at once: {orders} orders, "
        f"{int(charges) - int(charges_before)} charges"  # type: ignore[call-overload]
    )
    # and there is one order and one charge per key
    assert orders == len(keys)
    assert int(charges) - int(charges_before) == len(keys)  # type: ignore[call-overload]


async def test_no_oversell_with_200_concurrent_orders_over_both_instances(
    cluster: Cluster,
) -> None:
    # given a product with 50 units and 20 customers
    sku = "LAMP-DESK"
    cluster.sql("UPDATE products SET stock = 50 WHERE sku = %s", sku)
    sold_before = cluster.scalar(
        "SELECT coalesce(sum(quantity), 0) FROM order_lines WHERE sku = %s", sku
    )
    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=200, max_keepalive_connections=200)
    ) as http:
        tokens = await register(http, cluster, 20)
        lines = [{"sku": sku, "quantity": 1}]
        # when they send 200 orders for one unit each at once, spread over A and B
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                post(
                    http,
                    cluster.instances[i % 2],
                    PLACE,
                    tokens[i % 20],
                    lines=lines,
                    address=ADDRESS,
                    key=f"scale-stock-{i}-{uuid.uuid4().hex}",
                )
                for i in range(200)
            )
        )
        elapsed = time.monotonic() - started
    statuses = Counter(status for status, _ in results)
    placed = [
        body for _, body in results if body.get("data", {}).get("placeOrder", {}).get("order")
    ]
    refused = [
        body["data"]["placeOrder"]["userErrors"]
        for _, body in results
        if body.get("data", {}).get("placeOrder", {}).get("order") is None
    ]
    sold = cluster.scalar("SELECT coalesce(sum(quantity), 0) FROM order_lines WHERE sku = %s", sku)
    stock = cluster.scalar("SELECT stock FROM products WHERE sku = %s", sku)
    units = int(sold) - int(sold_before)  # type: ignore[call-overload]
    print(
        f"\n200 concurrent orders for 50 units in {elapsed:.1f} s: HTTP {dict(statuses)}, "
        f"{len(placed)} placed, {len(refused)} refused, {units} units sold, stock left {stock}"
    )
    # then exactly 50 were sold, and every other call was refused cleanly
    assert statuses == Counter({200: 200})
    assert all("errors" not in body for _, body in results)
    assert len(placed) == 50 and units == 50 and stock == 0
    assert len(refused) == 150
    for errors in refused:
        assert [e["code"] for e in errors] == ["BAD_USER_INPUT"], errors
        assert "stock" in errors[0]["message"]


async def test_every_outbox_email_is_sent_exactly_once_by_the_two_senders(
    cluster: Cluster,
) -> None:
    # given both instances running the outbox sender, and a burst of new orders
    async with httpx.AsyncClient(timeout=30) as http:
        tokens = await register(http, cluster, 4)
        await asyncio.gather(
            *(
                post(
                    http,
                    cluster.instances[i % 2],
                    PLACE,
                    tokens[i % 4],
                    lines=[{"sku": "MUG-001", "quantity": 1}],
                    address=ADDRESS,
                    key=f"scale-mail-{uuid.uuid4().hex}",
                )
                for i in range(20)
            )
        )
    # when the senders drain the outbox
    deadline = time.monotonic() + 30
    while cluster.scalar("SELECT count(*) FROM outbox_emails WHERE sent_at IS NULL") != 0:
        assert time.monotonic() < deadline, "outbox not drained within 30 s"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # a duplicate send would arrive now
    # then the sink got each outbox email exactly once (one Message-ID each)
    total = cluster.scalar("SELECT count(*) FROM outbox_emails")
    ids = Counter(str(message["Message-ID"]) for message in cluster.smtp.messages)
    duplicates = {key: n for key, n in ids.items() if n > 1}
    sent_by = {
        name: server.stderr_text().count(") sent")
        for name, server in zip("ab", cluster.instances, strict=True)
    }
    print(
        f"\noutbox: {total} emails, {sum(ids.values())} received, {len(ids)} distinct "
        f"Message-IDs, {len(duplicates)} duplicated; sent by A {sent_by['a']}, "
        f"B {sent_by['b']}"
    )
    assert duplicates == {}
    assert len(ids) == total
