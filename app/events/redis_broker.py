"""Live-update fan-out across instances: the `Broker` protocol over Redis pub/sub.

Every instance publishes to and subscribes on Redis channels named
`orders-api:<db>:<topic>` (`orders-api:0:order:42`, `orders-api:0:session:7`), so an event
accepted by one instance reaches subscribers connected to any other. `<db>` is the numbered
database of REDIS_URL: Redis pub/sub ignores the database (a message published while on
db 1 reaches a subscriber on db 2), and order ids are small integers every shop has, so
two deployments sharing a Redis server on different databases (staging beside production)
would otherwise wake each other's subscribers for orders that are not theirs.

Payloads are JSON; events are small dicts that say *what* changed (subscribers re-read
the data through the owner-scoped query), so nothing personal crosses Redis.

`publish` never waits: it queues the event for a background task that sends the queue in
order through the process's `RedisLink` (a timeout and a circuit breaker), so a slow or
hung Redis never slows the request that made the change (a carrier webhook, a packing
scan). Each `subscribe` holds one pub/sub connection and returns only after Redis confirmed
the subscriptions, so an event published after `subscribe` returned is never missed.

Delivery is at-most-once, like Redis pub/sub itself: an event that cannot be sent (Redis
down, the queue full) is logged and dropped (the change is committed; a client sees it on
its next read), and a subscription whose connection breaks ends with SERVICE_UNAVAILABLE
(the WebSocket stays open), to be restarted by the client — which is a code lookup,
refused the same way until Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import redis

from app.errors import ServiceUnavailable
from app.events.broker import Event
from app.redis_link import RedisLink, database_of

logger = logging.getLogger("app.events")

MAX_PENDING = 1000


def channel_of(topic: str, db: int) -> str:
    """The pub/sub channel of `topic` for the deployment on Redis database `db`."""
    return f"orders-api:{db}:{topic}"


def topic_of(channel: str | bytes, db: int) -> str:
    name = channel.decode() if isinstance(channel, bytes) else channel
    return name.removeprefix(channel_of("", db))


class RedisBroker:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.db = database_of(link.url)
        self._pending: asyncio.Queue[tuple[str, str]] | None = None
        self._sender: asyncio.Task[None] | None = None

    def publish(self, topic: str, event: Event) -> None:
        """Queue `event` for every subscriber of `topic` on any instance; returns at once."""
        if self._pending is None:
            self._pending = asyncio.Queue(MAX_PENDING)
            self._sender = asyncio.get_running_loop().create_task(self._send_forever())
        try:
            self._pending.put_nowait((channel_of(topic, self.db), json.dumps(event, default=str)))
        except asyncio.QueueFull:
            logger.warning("live update dropped: %d waiting to be published", MAX_PENDING)

    async def _send_forever(self) -> None:
        assert self._pending is not None
        while True:
            channel, payload = await self._pending.get()
            try:
                if self.link.breaker.is_open:
                    logger.warning("live update not published: Redis is unavailable")
                    continue
                await self.link.call(partial(self.link.client.publish, channel, payload))
            except ServiceUnavailable:
                logger.warning("live update not published: Redis did not answer")
            finally:
                self._pending.task_done()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far was sent (or given up on). For tests and
        shutdown."""
        if self._pending is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._pending.join()

    @contextlib.asynccontextmanager
    async def subscribe(self, topics: list[str]) -> AsyncIterator[AsyncIterator[tuple[str, Event]]]:
        if self.link.breaker.is_open:
            raise ServiceUnavailable()
        pubsub: Any = self.link.client.pubsub()
        try:
            try:
                async with asyncio.timeout(self.link.timeout * 5):
                    await pubsub.subscribe(*(channel_of(topic, self.db) for topic in topics))
                    await self._confirmed(pubsub, len(set(topics)))
            except (redis.RedisError, OSError, TimeoutError) as exc:
                self.link.failed(exc)
                raise ServiceUnavailable() from exc
            yield self._events(pubsub, self.db)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    @staticmethod
    async def _confirmed(pubsub: Any, expected: int) -> None:
        """Wait for Redis to acknowledge each SUBSCRIBE (a reply on the same connection)."""
        confirmed = 0
        while confirmed < expected:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None and message.get("type") == "subscribe":
                confirmed += 1

    @staticmethod
    async def _events(pubsub: Any, db: int) -> AsyncIterator[tuple[str, Event]]:
        """The subscription's events. When its Redis connection breaks, the stream ends
        with SERVICE_UNAVAILABLE (a domain error the client sees by its code; redis-py's
        own exception would be masked as INTERNAL)."""
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
                    yield topic_of(message["channel"], db), event
        except (redis.RedisError, OSError) as exc:
            logger.warning("live update stream lost Redis: %s", type(exc).__name__)
            raise ServiceUnavailable() from exc

    async def ping(self) -> bool:
        return await self.link.ping()

    async def aclose(self) -> None:
        if self._sender is not None:
            await self.drain(timeout=2.0)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender
