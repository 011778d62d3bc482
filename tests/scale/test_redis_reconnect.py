"""The Redis clients of one process through a real Redis outage (a cuttable TCP proxy in
front of the real server): the broker and the limiter fail cleanly while it is gone (and,
once the link's circuit breaker is open, at once) and work again, without a restart, once
it is back and the link's background probe has closed the breaker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from app.errors import RateLimited, ServiceUnavailable
from app.events.redis_broker import RedisBroker
from app.redis_link import RedisLink
from app.security.ratelimit import Limiter
from app.settings import RateLimits
from tests.scale.proxy import TcpProxy

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[tuple[TcpProxy, str]]:
    host_port, db = redis_url.removeprefix("redis://").rsplit("/", 1)
    host, port = host_port.rsplit(":", 1)
    proxy = TcpProxy((host, int(port)))
    proxy.restore()
    try:
        yield proxy, f"redis://127.0.0.1:{proxy.port}/{db}"
    finally:
        proxy.cut()


@pytest.fixture
async def link(redis_proxy: tuple[TcpProxy, str]) -> AsyncIterator[RedisLink]:
    """The process's one link to Redis, through the proxy."""
    _, url = redis_proxy
    made = RedisLink(url)
    yield made
    await made.aclose()


def unique_topic() -> str:
    return f"order:test-{uuid.uuid4().hex}"


async def eventually(condition: Callable[[], bool], timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def back_in_service(link: RedisLink) -> None:
    """Redis answers again: the link's background probe (every 0.5 s) closes the breaker
    by itself, no restart needed; bounded, so a link that never recovers fails the test."""
    await eventually(lambda: not link.breaker.is_open, timeout=5.0)


async def test_a_stream_that_loses_redis_ends_with_service_unavailable_and_the_broker_recovers(
    redis_proxy: tuple[TcpProxy, str], link: RedisLink
) -> None:
    proxy, _ = redis_proxy
    broker = RedisBroker(link)
    topic = unique_topic()
    try:
        async with broker.subscribe([topic]) as events:
            broker.publish(topic, {"type": "BEFORE"})
            assert await asyncio.wait_for(events.__anext__(), 2) == (topic, {"type": "BEFORE"})
            waiting = asyncio.ensure_future(events.__anext__())
            await asyncio.sleep(0.1)
            # when Redis goes away under an open stream
            proxy.cut()
            # then the stream ends with the domain error (not a redis-py exception: INTERNAL)
            with pytest.raises(ServiceUnavailable):
                await asyncio.wait_for(waiting, 5)
        # and publishing drops the event without raising; the link then fails fast; ping
        # says Redis is gone
        broker.publish(topic, {"type": "LOST"})
        await broker.drain()
        await eventually(lambda: link.breaker.is_open, timeout=3.0)
        assert await broker.ping() is False
        with pytest.raises(ServiceUnavailable):
            async with broker.subscribe([topic]):
                pass
        # when Redis is back, the same broker (same process) subscribes and publishes again
        proxy.restore()
        assert await broker.ping() is True
        await back_in_service(link)
        async with broker.subscribe([topic]) as events:
            broker.publish(topic, {"type": "AFTER"})
            assert await asyncio.wait_for(events.__anext__(), 2) == (topic, {"type": "AFTER"})
    finally:
        await broker.aclose()


async def test_the_limiter_fails_closed_while_redis_is_gone_and_counts_on_after(
    redis_proxy: tuple[TcpProxy, str], link: RedisLink
) -> None:
    proxy, _ = redis_proxy
    limiter = Limiter(RateLimits(lookups_per_user="3/minute"), link)
    user = f"user:{uuid.uuid4().hex}"
    await limiter.charge_lookup(user, "10.0.0.1")
    # when Redis goes away (its pooled connection breaks, new ones are refused)
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        await limiter.charge_lookup(user, "10.0.0.1")
    # then lookups fail closed within the call timeout (never silently unlimited), the
    # next ones at once (the breaker is open), and readiness says why
    assert time.monotonic() - started < 1.5
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        await limiter.charge_lookup(user, "10.0.0.1")
    assert time.monotonic() - started < 0.1
    assert await limiter.ping() is False
    # when it is back, the same limiter charges again, against the budget Redis kept
    proxy.restore()
    assert await limiter.ping() is True
    await back_in_service(link)
    await limiter.charge_lookup(user, "10.0.0.1")
    await limiter.charge_lookup(user, "10.0.0.1")
    with pytest.raises(RateLimited):
        await limiter.charge_lookup(user, "10.0.0.1")
