"""Live-update fan-out across instances: the `Broker` protocol over Redis pub/sub.

Every instance publishes to and subscribes on Redis channels named
`orders-api:<topic>` (`orders-api:order:42`, `orders-api:session:7`), so an event accepted
by one instance reaches subscribers connected to any other. Payloads are JSON; events are
small dicts that say *what* changed (subscribers re-read the data through the owner-scoped
query), so nothing personal crosses Redis.

`publish` uses a synchronous client (its connection pool is thread-safe), because services
publish after commit from worker threads. Each `subscribe` holds one pub/sub connection of
a `redis.asyncio` client bound to the subscriber's event loop, and returns only after Redis
confirmed the subscriptions, so an event published after `subscribe` returned is never
missed.

Delivery is at-most-once, like Redis pub/sub itself: a publish while Redis is down is
logged and dropped (the change is committed; a client sees it on its next read), and a
subscription whose connection breaks ends with SERVICE_UNAVAILABLE (the WebSocket stays
open), to be restarted by the client — which is a code lookup, refused the same way until
Redis is back. Every client here reconnects by itself once Redis answers again.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio

from app.errors import ServiceUnavailable
from app.events.broker import Event

logger = logging.getLogger("app.events")

CHANNEL_PREFIX = "orders-api:"
SOCKET_TIMEOUT_SECONDS = 1.0


def channel_of(topic: str) -> str:
    return CHANNEL_PREFIX + topic


def topic_of(channel: str | bytes) -> str:
    name = channel.decode() if isinstance(channel, bytes) else channel
    return name.removeprefix(CHANNEL_PREFIX)


class RedisBroker:
    def __init__(self, url: str) -> None:
        self.url = url
        self._publisher = redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        )

    def publish(self, topic: str, event: Event) -> None:
        """Send `event` to every subscriber of `topic` on any instance. Never raises: the
        change behind the event is already committed, so a Redis outage costs the live
        update only."""
        try:
            self._publisher.publish(channel_of(topic), json.dumps(event, default=str))
        except redis.RedisError as exc:
            logger.warning("live update not published: %s", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def subscribe(self, topics: list[str]) -> AsyncIterator[AsyncIterator[tuple[str, Event]]]:
        client = redis.asyncio.Redis.from_url(
            self.url, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS
        )
        pubsub: Any = client.pubsub()
        try:
            try:
                await pubsub.subscribe(*(channel_of(topic) for topic in topics))
                await self._confirmed(pubsub, len(set(topics)))
            except (redis.RedisError, OSError) as exc:
                raise ServiceUnavailable() from exc
            yield self._events(pubsub)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()

    @staticmethod
    async def _confirmed(pubsub: Any, expected: int) -> None:
        """Wait for Redis to acknowledge each SUBSCRIBE (a reply on the same connection)."""
        confirmed = 0
        while confirmed < expected:
            message = await pubsub.get_message(timeout=SOCKET_TIMEOUT_SECONDS * 5)
            if message is None:
                raise redis.TimeoutError("no subscribe confirmation from Redis")
            if message.get("type") == "subscribe":
                confirmed += 1

    @staticmethod
    async def _events(pubsub: Any) -> AsyncIterator[tuple[str, Event]]:
        """The subscription's events. When its Redis connection breaks and redis-py cannot
        reconnect, the stream ends with SERVICE_UNAVAILABLE (a domain error the client sees
        by its code; redis-py's own exception would be masked as INTERNAL)."""
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    event = json.loads(message["data"])
                except (TypeError, ValueError):
                    logger.warning("ignored a malformed live update")
                    continue
                if isinstance(event, dict):
                    yield topic_of(message["channel"]), event
        except (redis.RedisError, OSError) as exc:
            logger.warning("live update stream lost Redis: %s", type(exc).__name__)
            raise ServiceUnavailable() from exc

    def ping(self) -> bool:
        try:
            return bool(self._publisher.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._publisher.close()
