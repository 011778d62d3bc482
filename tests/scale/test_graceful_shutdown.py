"""SIGTERM (what an orchestrator sends before replacing an instance): an open subscription
is closed with a proper WebSocket close frame, not dropped, and the process exits."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import DEMO_PASSWORD, THROUGH_REDIS, LiveServer

pytestmark = pytest.mark.e2e

LOGIN = """mutation { login(email: "alice@example.com", password: "%s") {
  tokens { accessToken } } }"""
SHIPPED = "{ myOrders(filter: {status: [SHIPPED]}) { edges { node { code } } } }"
SUBSCRIBE = "subscription F($code: String!) { orderUpdates(code: $code) { type } }"


@THROUGH_REDIS  # the test waits until Redis counts the subscription
async def test_sigterm_closes_open_subscriptions_cleanly(live_server: LiveServer) -> None:
    # given alice following her shipped order over graphql-transport-ws
    async with httpx.AsyncClient(timeout=10) as http:
        body = (
            await http.post(live_server.graphql_url, json={"query": LOGIN % DEMO_PASSWORD})
        ).json()
        token = body["data"]["login"]["tokens"]["accessToken"]
        auth = {"Authorization": f"Bearer {token}"}
        body = (
            await http.post(live_server.graphql_url, json={"query": SHIPPED}, headers=auth)
        ).json()
    code = body["data"]["myOrders"]["edges"][0]["node"]["code"]
    url = live_server.base_url.replace("http://", "ws://") + "/graphql"
    async with connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIBE, "variables": {"code": code}},
                }
            )
        )
        await live_server.wait_until_following(code)  # the server holds the subscription
        # when the server is told to stop
        started = time.monotonic()
        live_server.process.send_signal(signal.SIGTERM)
        # then the client receives a complete message or a close frame (not a dropped socket)
        frames: list[str] = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames.append(str(await asyncio.wait_for(ws.recv(), timeout=8)))
        elapsed = time.monotonic() - started
    received = closed.value.rcvd
    print(f"\nSIGTERM: frames {frames}, close frame {received}, after {elapsed * 1000:.0f} ms")
    assert received is not None, "the connection was dropped without a close frame"
    assert received.code in (1000, 1001, 1012)
    # and the process exits by itself within the graceful-shutdown timeout
    assert await asyncio.to_thread(live_server.process.wait, 12) in (0, -signal.SIGTERM)
