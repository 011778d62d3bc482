"""The Redis clients of one process through a real Redis outage (a cuttable TCP proxy in
front of the real server): the broker and the limiter fail cleanly while it is gone and
work again, without a restart, once it is back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from app.errors import RateLimited, ServiceUnavailable
from app.events.redis_broker import RedisBroker
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


def unique_topic() -> str:
    return f"order:test-{uuid.uuid4().hex}"


async def test_a_stream_that_loses_redis_ends_with_service_unavailable_and_the_broker_recovers(
    redis_proxy: tuple[TcpProxy, str],
) -> None:
    proxy, url = redis_proxy
    broker = RedisBroker(url)
    topic = unique_topic()
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
    # and publishing drops the event without raising; ping says so
    broker.publish(topic, {"type": "LOST"})
    assert broker.ping() is False
    with pytest.raises(ServiceUnavailable):
        async with broker.subscribe([topic]):
            pass
    # when Redis is back, the same broker (same process) subscribes and publishes again
    proxy.restore()
    assert broker.ping() is True
    async with broker.subscribe([topic]) as events:
        broker.publish(topic, {"type": "AFTER"})
        assert await asyncio.wait_for(events.__anext__(), 2) == (topic, {"type": "AFTER"})
    broker.close()


def test_the_limiter_fails_closed_while_redis_is_gone_and_counts_on_after(
    redis_proxy: tuple[TcpProxy, str],
) -> None:
    proxy, url = redis_proxy
    limiter = Limiter(RateLimits(lookups_per_user="3/minute"), url)
    user = f"user:{uuid.uuid4().hex}"
    limiter.charge_lookup(user, "10.0.0.1")
    # when Redis goes away (its pooled connection breaks, new ones are refused)
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        limiter.charge_lookup(user, "10.0.0.1")
    # then lookups fail closed at once (never silently unlimited), readiness says why
    assert time.monotonic() - started < 1.5
    assert limiter.ping() is False
    # when it is back, the same limiter charges again, against the budget Redis kept
    proxy.restore()
    assert limiter.ping() is True
    limiter.charge_lookup(user, "10.0.0.1")
    limiter.charge_lookup(user, "10.0.0.1")
    with pytest.raises(RateLimited):
        limiter.charge_lookup(user, "10.0.0.1")
