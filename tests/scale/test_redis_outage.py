"""Redis unreachable under two instances: code lookups fail closed with SERVICE_UNAVAILABLE
on both (DESIGN §4: never silently unlimited, never a stack trace), what does not need the
shared limiter keeps working, /readyz goes red, an open `orderUpdates` stream ends with a
clean SERVICE_UNAVAILABLE (the socket stays open; the client restarts the stream) — and
when Redis is back the same processes recover by themselves: lookups, readiness and
cross-instance fan-out. The outage is real: both instances reach Redis through a TCP
proxy on loopback that the test cuts and restores."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from app.settings import DEV_CARRIER_SECRET
from scripts.carrier_client import event_body, signed_headers
from tests.e2e.conftest import (
    DEMO_PASSWORD,
    LiveServer,
    SmtpSink,
)
from tests.scale.conftest import Cluster, _unreachable, running_cluster
from tests.scale.proxy import TcpProxy
from tests.support.subscriptions import channel_subscribers, wait_for_channel_subscribers

pytestmark = pytest.mark.e2e

# A database number of its own (the shared cluster uses 14), flushed first.
OUTAGE_REDIS_DB = int(os.environ.get("TEST_REDIS_OUTAGE_DB", "13"))
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
OUTAGE_SECONDS = 4.0
RECOVERY_DEADLINE_SECONDS = 10.0
# A refused lookup must answer promptly: the limiter fails fast, it does not block the
# event loop retrying a Redis that is not there.
PROMPT_SECONDS = 1.5

LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    tokens { accessToken refreshToken } userErrors { code }
  }
}"""
REFRESH = """
mutation Refresh($refresh: String!) {
  refreshToken(refreshToken: $refresh) { tokens { accessToken } userErrors { code } }
}"""
ORDER = "query Order($code: String!) { order(code: $code) { code status } }"
ELIGIBILITY = "query Eligible($code: String!) { returnEligibility(code: $code) { orderCode } }"
MY_ORDERS = "{ myOrders(first: 5) { edges { node { code status } } } }"
SHIPPED = "{ myOrders(filter: {status: [SHIPPED]}) { edges { node { code } } } }"
PRODUCTS = "{ products(first: 3) { edges { node { sku } } } }"
SUBSCRIBE = """
subscription Follow($code: String!) {
  orderUpdates(code: $code) { type order { shipments { trackingNumber status } } }
}"""


@pytest.fixture(scope="module")
def redis_proxy() -> Iterator[TcpProxy]:
    try:
        direct = redis.Redis(
            host=REDIS_HOST, port=REDIS_PORT, db=OUTAGE_REDIS_DB, socket_connect_timeout=2
        )
        direct.ping()
    except Exception as exc:
        _unreachable("Redis", str(exc))
    direct.flushdb()
    direct.close()
    proxy = TcpProxy((REDIS_HOST, REDIS_PORT))
    proxy.restore()
    try:
        yield proxy
    finally:
        proxy.cut()


@pytest.fixture(scope="module")
def redis_outage_cluster(
    scratch_database: str,
    redis_proxy: TcpProxy,
    scale_smtp: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("redis-outage")
    redis_url = f"redis://127.0.0.1:{redis_proxy.port}/{OUTAGE_REDIS_DB}"
    wide = {"RATE_LOOKUPS_PER_USER": "10000/minute"}
    with running_cluster(scratch_database, redis_url, scale_smtp, workdir, wide) as running:
        yield running


async def post(
    http: httpx.AsyncClient, server: LiveServer, query: str, token: str | None = None, **kw: Any
) -> tuple[httpx.Response, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    response = await http.post(
        server.graphql_url, json={"query": query, "variables": kw}, headers=headers
    )
    return response, time.monotonic() - started


def codes_of(response: httpx.Response) -> set[str]:
    return {e.get("extensions", {}).get("code") for e in response.json().get("errors") or []}


def assert_clean(response: httpx.Response) -> None:
    """No 5xx, no stack trace, no driver name leaking out."""
    assert response.status_code < 500, response.text
    for leak in ("Traceback", "redis", "Redis", "ConnectionError", "INTERNAL"):
        assert leak not in response.text, response.text


def ws_client(server: LiveServer, token: str) -> Client:
    transport = WebsocketsTransport(
        url=server.base_url.replace("http://", "ws://") + "/graphql",
        init_payload={"Authorization": f"Bearer {token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    return Client(transport=transport, fetch_schema_from_transport=False)


async def poll(check: Callable[[], Awaitable[bool]], deadline_seconds: float, what: str) -> float:
    """Seconds until `check()` first holds; fails after the deadline."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < deadline_seconds, f"{what}: no recovery"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def carrier_event(http: httpx.AsyncClient, server: LiveServer, status: str) -> None:
    payload = event_body(
        carrier="DHL",
        tracking_number="DEMO-ALICE-2",
        status=status,
        location="Leipzig Hub",
        event_id=f"redis-outage-{uuid.uuid4().hex}",
    )
    response = await http.post(
        f"{server.base_url}/webhooks/carrier",
        content=payload,
        headers=signed_headers(DEV_CARRIER_SECRET, payload),
    )
    assert response.status_code == 202, response.text


async def next_tracking_event(updates: Any, status: str, timeout: float) -> dict[str, Any]:
    """The next update carrying `status` (other events on the server-wide channel skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {status} update within {timeout} s"
        update: dict[str, Any] = await asyncio.wait_for(updates.__anext__(), remaining)
        shipments = update["orderUpdates"]["order"]["shipments"]
        if any(s["status"] == status for s in shipments):
            return update


async def end_of(stream: Any) -> TransportQueryError:
    """How a stream ends: the error it ends with (updates before it are skipped: channels
    are server-wide, so another run on the same Redis may publish on the same order id)."""
    while True:
        try:
            await stream.__anext__()
        except TransportQueryError as error:
            return error


async def test_redis_outage_fails_lookups_closed_and_recovers_without_restart(
    redis_outage_cluster: Cluster, redis_proxy: TcpProxy
) -> None:
    cluster, proxy = redis_outage_cluster, redis_proxy
    figures: list[str] = []
    async with httpx.AsyncClient(timeout=30) as http:
        # given alice logged in, with a shipped order both instances can look up
        login, _ = await post(
            http, cluster.a, LOGIN, email="alice@example.com", password=DEMO_PASSWORD
        )
        tokens = login.json()["data"]["login"]["tokens"]
        token = tokens["accessToken"]
        shipped, _ = await post(http, cluster.b, SHIPPED, token)
        code = shipped.json()["data"]["myOrders"]["edges"][0]["node"]["code"]
        for server in cluster.instances:
            found, _ = await post(http, server, ORDER, token, code=code)
            assert found.json()["data"]["order"]["code"] == code, found.text

        # and a live stream on B, open before the outage
        channel = cluster.order_channel(code)
        following = await channel_subscribers(cluster.redis_url, channel)
        async with ws_client(cluster.b, token) as session:
            stream = session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"code": code}))
            ended = asyncio.ensure_future(end_of(stream))
            await wait_for_channel_subscribers(cluster.redis_url, channel, following + 1)
            assert not ended.done()

            # when Redis becomes unreachable for both instances
            proxy.cut()
            cut_at = time.monotonic()

            # then the open stream ends with a clean SERVICE_UNAVAILABLE, the socket open
            stream_error = await asyncio.wait_for(ended, timeout=10)
            stream_end = time.monotonic() - cut_at
            assert stream_error.errors is not None
            assert [e["extensions"]["code"] for e in stream_error.errors] == [
                "SERVICE_UNAVAILABLE"
            ], stream_error.errors
            figures.append(f"open stream on B ended {stream_end * 1000:.0f} ms after the cut")

            # and restarting it is a code lookup: refused the same way, on the same socket
            again = session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"code": code}))
            with pytest.raises(TransportQueryError) as restart_error:
                await asyncio.wait_for(again.__anext__(), timeout=10)
            assert restart_error.value.errors is not None
            assert {e["extensions"]["code"] for e in restart_error.value.errors} == {
                "SERVICE_UNAVAILABLE"
            }

        # and every code-taking door fails closed on both instances, promptly
        slowest = 0.0
        for server in cluster.instances:
            for query in (ORDER, ELIGIBILITY):
                refused, elapsed = await post(http, server, query, token, code=code)
                assert_clean(refused)
                assert codes_of(refused) == {"SERVICE_UNAVAILABLE"}, refused.text
                slowest = max(slowest, elapsed)
        assert slowest < PROMPT_SECONDS, f"a refused lookup took {slowest:.2f} s"
        figures.append(f"refused lookups answered in <= {slowest * 1000:.0f} ms")

        # and login (its failure back-off lives in the same store) fails closed too
        refused_login, _ = await post(
            http, cluster.b, LOGIN, email="alice@example.com", password=DEMO_PASSWORD
        )
        assert_clean(refused_login)
        assert codes_of(refused_login) == {"SERVICE_UNAVAILABLE"}, refused_login.text

        # while what does not need the limiter keeps working on both instances
        for server in cluster.instances:
            for query in (MY_ORDERS, PRODUCTS):
                answer, elapsed = await post(http, server, query, token)
                assert answer.status_code == 200 and not answer.json().get("errors"), answer.text
                assert elapsed < PROMPT_SECONDS
            assert (await http.get(f"{server.base_url}/healthz")).status_code == 200
            ready = await http.get(f"{server.base_url}/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["redis"] is False
            assert ready.json()["checks"]["database"] is True
        refreshed, _ = await post(http, cluster.a, REFRESH, refresh=tokens["refreshToken"])
        assert refreshed.json()["data"]["refreshToken"]["tokens"]["accessToken"], refreshed.text
        # a carrier event is still accepted (committed; only its live update is lost)
        await carrier_event(http, cluster.a, "IN_TRANSIT")
        # and the refusal holds for as long as the outage does (no fail-open after a while)
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - cut_at)))
        for server in cluster.instances:
            refused, _ = await post(http, server, ORDER, token, code=code)
            assert codes_of(refused) == {"SERVICE_UNAVAILABLE"}, refused.text
        outage = time.monotonic() - cut_at

        # when Redis is back: the same processes, no restart
        proxy.restore()
        restored_at = time.monotonic()
        for name, server in zip("AB", cluster.instances, strict=True):

            async def looks_up(server: LiveServer = server) -> bool:
                answer, _ = await post(http, server, ORDER, token, code=code)
                assert_clean(answer)
                return not answer.json().get("errors")

            async def is_ready(server: LiveServer = server) -> bool:
                return (await http.get(f"{server.base_url}/readyz")).status_code == 200

            await poll(looks_up, RECOVERY_DEADLINE_SECONDS, f"lookups on {name}")
            figures.append(f"lookups on {name} back {time.monotonic() - restored_at:.2f} s")
            await poll(is_ready, RECOVERY_DEADLINE_SECONDS, f"/readyz on {name}")
        login_again, _ = await post(
            http, cluster.b, LOGIN, email="alice@example.com", password=DEMO_PASSWORD
        )
        assert login_again.json()["data"]["login"]["tokens"]["accessToken"], login_again.text

        # then fan-out works again: a carrier event on A reaches a new stream on B
        following = await channel_subscribers(cluster.redis_url, channel)
        async with ws_client(cluster.b, token) as session:
            updates = session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"code": code}))
            first = asyncio.ensure_future(next_tracking_event(updates, "OUT_FOR_DELIVERY", 10))
            await wait_for_channel_subscribers(cluster.redis_url, channel, following + 1)
            sent = time.monotonic()
            await carrier_event(http, cluster.a, "OUT_FOR_DELIVERY")
            update = await first
            latency = time.monotonic() - sent
        assert update["orderUpdates"]["type"] == "TRACKING_EVENT"
        figures.append(f"fan-out A -> B after recovery {latency * 1000:.0f} ms")
        figures.append(f"outage lasted {outage:.1f} s")
    print("\nRedis outage: " + "; ".join(figures))
