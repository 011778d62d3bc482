"""Live-update fan-out. Services publish after they commit; subscriptions listen.

`InProcessBroker` is the embedded default (one process). The `Broker` protocol is what a
Redis pub/sub implementation plugs into for several instances. Events are small dicts
that say *what* changed; subscribers re-read the data through the same owner-scoped query,
so an event never carries anything a subscriber could not otherwise see. A subscription
that finds the order's status moved since its last update adds STATUS_CHANGED after the
event's own update (`orderUpdates`, app/orders/schema.py): a publisher need not know
whether its change moved the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any, Protocol

Event = dict[str, Any]


def order_topic(order_id: int) -> str:
    return f"order:{order_id}"


def session_topic(session_id: int) -> str:
    """Published when a login session ends, so its live streams close at once."""
    return f"session:{session_id}"


class Broker(Protocol):
    def publish(self, topic: str, event: Event) -> None:
        """Hand `event` over for delivery and return at once: never waits on I/O, never
        raises (the change behind it is committed; losing it costs a live update only)."""
        ...

    def subscribe(
        self, topics: list[str]
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[tuple[str, Event]]]: ...

    async def aclose(self) -> None: ...


class InProcessBroker:
    """Thread-safe (a test may publish from its own thread); each subscriber's queue is
    fed on its own event loop."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[_Subscriber]] = {}
        self._max_queue = max_queue

    def publish(self, topic: str, event: Event) -> None:
        with self._lock:
            targets = list(self._subscribers.get(topic, ()))
        for subscriber in targets:
            subscriber.deliver(topic, event)

    @contextlib.asynccontextmanager
    async def subscribe(self, topics: list[str]) -> AsyncIterator[AsyncIterator[tuple[str, Event]]]:
        subscriber = _Subscriber(asyncio.get_running_loop(), self._max_queue)
        with self._lock:
            for topic in topics:
                self._subscribers.setdefault(topic, set()).add(subscriber)
        try:
            yield subscriber.events()
        finally:
            with self._lock:
                for topic in topics:
                    listeners = self._subscribers.get(topic)
                    if listeners is not None:
                        listeners.discard(subscriber)
                        if not listeners:
                            del self._subscribers[topic]

    def subscriber_count(self, topic: str) -> int:
        with self._lock:
            return len(self._subscribers.get(topic, ()))

    async def aclose(self) -> None:
        return None


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, max_queue: int) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[tuple[str, Event]] = asyncio.Queue(max_queue)

    def deliver(self, topic: str, event: Event) -> None:
        def put() -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stuck client drops, not blocks
                self._queue.put_nowait((topic, event))

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            put()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(put)

    async def events(self) -> AsyncIterator[tuple[str, Event]]:
        while True:
            yield await self._queue.get()
