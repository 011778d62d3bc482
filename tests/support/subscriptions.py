"""Live updates over graphql-transport-ws: against the in-process app (TestClient), a
stream that collects what the server sends, `orderUpdates` subscriptions, and a wait until
the app's broker holds them; against real server processes that fan out through Redis, a
wait until Redis counts the subscription on the order's channel. Never a fixed sleep: an
event published before the subscription is registered is lost, and a sleep only makes
that unlikely."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis.asyncio
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.container import Services
from app.events.broker import order_topic
from app.events.redis_broker import channel_of
from app.redis_link import database_of

SUBSCRIBE = (
    "subscription S($code: String!) { orderUpdates(code: $code) { type order { code status } } }"
)


class Stream:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.inbox: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            while True:
                self.inbox.put(self.ws.receive_json())
        except (WebSocketDisconnect, Exception) as exc:  # the socket closed
            self.inbox.put(exc)

    def next(self, timeout: float = 5.0) -> Any:
        return self.inbox.get(timeout=timeout)


@contextmanager
def connect(http: TestClient, token: str | None) -> Iterator[Stream]:
    with http.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        payload = {"Authorization": f"Bearer {token}"} if token else {}
        ws.send_json({"type": "connection_init", "payload": payload})
        stream = Stream(ws)
        yield stream


def subscribe(stream: Stream, code: str, op_id: str = "1") -> None:
    stream.ws.send_json(
        {
            "id": op_id,
            "type": "subscribe",
            "payload": {"query": SUBSCRIBE, "variables": {"code": code}},
        }
    )


def wait_for_subscriber(services: Services, order_id: int | None, count: int = 1) -> None:
    """Until the app's broker holds `count` subscribers of the order (the subscription is
    registered: an event published from now on reaches it)."""
    assert order_id is not None
    deadline = time.monotonic() + 5
    broker = services.events
    while broker.subscriber_count(f"order:{order_id}") < count:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            pytest.fail("the subscription never started")
        time.sleep(0.01)


def order_channel(order_id: int, redis_url: str) -> str:
    """The Redis channel of an order's live updates (what RedisBroker subscribes to) for a
    server on `redis_url`'s numbered database."""
    return channel_of(order_topic(order_id), database_of(redis_url))


async def channel_subscribers(redis_url: str, channel: str) -> int:
    """How many subscriptions Redis holds on `channel` (PUBSUB NUMSUB), across instances."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        counts = await client.pubsub_numsub(channel)
    finally:
        await client.aclose()
    return int(counts[0][1]) if counts else 0


async def wait_for_channel_subscribers(
    redis_url: str, channel: str, at_least: int, timeout: float = 10.0
) -> None:
    """Until Redis holds `at_least` subscriptions on `channel`. Redis delivers every message
    published after it counted a subscription, so from then on an event published on any
    instance reaches the stream."""
    deadline = time.monotonic() + timeout
    while (found := await channel_subscribers(redis_url, channel)) < at_least:
        if time.monotonic() > deadline:
            pytest.fail(
                f"{channel}: {found} subscription(s) after {timeout} s, expected {at_least}"
            )
        await asyncio.sleep(0.02)
