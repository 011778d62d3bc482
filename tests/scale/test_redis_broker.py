"""RedisBroker against the real Redis: the Broker protocol's promises, across two brokers
(two instances, each with its own RedisLink); build_services picks it when REDIS_URL is set.

`publish` only queues (a background task of the broker sends), so a test that needs the
event on Redis awaits `broker.drain()` or waits for it on the receiving side."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from app.container import build_services
from app.errors import ServiceUnavailable
from app.events.broker import InProcessBroker
from app.events.redis_broker import RedisBroker
from app.redis_link import RedisLink, database_of
from app.settings import Settings
from tests.conftest import FAST_PASSWORDS

pytestmark = pytest.mark.redis

UNREACHABLE = "redis://127.0.0.1:1/0"


def unique_topic() -> str:
    # Pub/sub channels are server-wide (not per database): keep concurrent runs apart.
    return f"order:test-{uuid.uuid4().hex}"


async def next_event(events: object, timeout: float = 2.0) -> tuple[str, dict[str, object]]:
    result: tuple[str, dict[str, object]] = await asyncio.wait_for(
        events.__anext__(),  # type: ignore[attr-defined]
        timeout,
    )
    return result


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def instances(redis_url: str) -> AsyncIterator[Callable[[str], RedisBroker]]:
    """Makes brokers as API instances have them (a RedisLink each); closes them all after."""
    made: list[RedisBroker] = []

    def instance(url: str) -> RedisBroker:
        made.append(RedisBroker(RedisLink(url)))
        return made[-1]

    yield instance
    for broker in made:
        await broker.aclose()
        await broker.link.aclose()


def other_db(url: str) -> str:
    """The same Redis server, another numbered database (as a second deployment has)."""
    db = database_of(url)
    return url.rsplit("/", 1)[0] + f"/{db - 1 if db else 1}"


async def subscriber_count(url: str, topic: str) -> int:
    channel = f"orders-api:{database_of(url)}:{topic}"
    client = redis.asyncio.Redis.from_url(url)
    try:
        counts: dict[Any, int] = dict(await client.pubsub_numsub(channel))
    finally:
        await client.aclose()
    return counts[channel.encode()]


async def test_an_event_published_by_one_instance_reaches_a_subscriber_of_another(
    redis_url: str, instances: Callable[[str], RedisBroker]
) -> None:
    # given two brokers, as two API instances would have, and a subscriber on the second
    instance_a, instance_b = instances(redis_url), instances(redis_url)
    topic = unique_topic()
    async with instance_b.subscribe([topic]) as events:
        # when the first publishes (as a service does after its commit)
        instance_a.publish(topic, {"type": "SHIPPED", "status": "SHIPPED"})
        # then the subscriber gets the topic and the JSON payload back as a dict
        assert await next_event(events) == (topic, {"type": "SHIPPED", "status": "SHIPPED"})


async def test_channels_carry_the_orders_api_prefix_and_the_database_number(
    redis_url: str, instances: Callable[[str], RedisBroker]
) -> None:
    # given a raw Redis subscriber on the prefixed channel of the URL's database
    topic = unique_topic()
    channel = f"orders-api:{database_of(redis_url)}:{topic}"
    client = redis.asyncio.Redis.from_url(redis_url)
    raw = client.pubsub(ignore_subscribe_messages=True)
    await raw.subscribe(channel)
    await raw.get_message(timeout=1)  # the subscription's confirmation
    # when the broker publishes on the bare topic
    broker = instances(redis_url)
    broker.publish(topic, {"type": "CHANGED"})
    await broker.drain()
    # then the message is on "orders-api:<db>:<topic>", as JSON
    message = await raw.get_message(timeout=2)
    await raw.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose untyped
    await client.aclose()
    assert message is not None
    assert message["channel"] == channel.encode()
    assert message["data"] == b'{"type": "CHANGED"}'


async def test_deployments_on_other_databases_of_one_redis_do_not_hear_each_other(
    redis_url: str, instances: Callable[[str], RedisBroker]
) -> None:
    # given a subscriber of one topic on this deployment's database, and one of the same
    # topic on another database of the same Redis server (staging beside production: order
    # ids are small integers every shop has)
    here, there = instances(redis_url), instances(other_db(redis_url))
    topic = unique_topic()
    async with here.subscribe([topic]) as ours, there.subscribe([topic]) as theirs:
        # when the other deployment publishes on the topic (sent to Redis before going on)
        there.publish(topic, {"type": "THEIRS"})
        await there.drain()
        assert await next_event(theirs) == (topic, {"type": "THEIRS"})
        # and then this deployment does
        here.publish(topic, {"type": "OURS"})
        await here.drain()
        # then each subscriber's first event is its own deployment's (Redis pub/sub itself
        # ignores databases: on a shared channel, THEIRS would arrive here first)
        assert await next_event(ours) == (topic, {"type": "OURS"})
        there.publish(topic, {"type": "THEIRS AGAIN"})
        assert await next_event(theirs) == (topic, {"type": "THEIRS AGAIN"})


async def test_a_subscriber_gets_its_topics_only_and_unsubscribes_on_exit(
    redis_url: str, instances: Callable[[str], RedisBroker]
) -> None:
    # given a subscriber of two topics, and a third topic nobody here follows
    broker = instances(redis_url)
    mine, also_mine, other = unique_topic(), f"session:{uuid.uuid4().hex}", unique_topic()
    async with broker.subscribe([mine, also_mine]) as events:
        # when events are published on all three
        broker.publish(other, {"type": "NOT_FOR_YOU"})
        broker.publish(mine, {"type": "ONE"})
        broker.publish(also_mine, {"type": "SESSION_ENDED"})
        # then exactly the two followed topics arrive, in order
        assert await next_event(events) == (mine, {"type": "ONE"})
        assert await next_event(events) == (also_mine, {"type": "SESSION_ENDED"})
        with pytest.raises(TimeoutError):
            await next_event(events, timeout=0.3)
        assert await subscriber_count(redis_url, mine) == 1
    # and leaving the block releases the Redis subscription
    assert await subscriber_count(redis_url, mine) == 0


async def test_redis_down_publish_is_dropped_and_subscribe_fails_clearly(
    instances: Callable[[str], RedisBroker], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.events")
    # given a broker whose Redis cannot be reached
    broker = instances(UNREACHABLE)
    # when a service publishes, then it does not raise (its change is committed already)
    broker.publish(unique_topic(), {"type": "CHANGED"})
    # and the event is dropped (logged), not kept waiting in the queue
    await broker.drain()
    await eventually(lambda: "live update not published" in caplog.text)
    assert await broker.ping() is False
    # when a client subscribes, then it gets SERVICE_UNAVAILABLE rather than a silent stream
    with pytest.raises(ServiceUnavailable):
        async with broker.subscribe([unique_topic()]):
            pass
    # and so does a client of an instance that has not noticed yet (its breaker closed):
    # the connection attempt itself fails
    fresh = instances(UNREACHABLE)
    assert not fresh.link.breaker.is_open
    with pytest.raises(ServiceUnavailable):
        async with fresh.subscribe([unique_topic()]):
            pass


async def test_build_services_uses_redis_when_redis_url_is_set(
    redis_url: str, tmp_path: Path
) -> None:
    # given settings without and with REDIS_URL (a database file: the async engine's pool
    # does not take an in-memory SQLite URL)
    plain = Settings(database_url=f"sqlite:///{tmp_path / 'orders.db'}", jwt_secret="x" * 48)
    # when the services are built, then the broker follows the setting
    services = build_services(plain, passwords=FAST_PASSWORDS)
    assert isinstance(services.events, InProcessBroker)
    assert services.redis is None
    await services.aclose()
    services = build_services(replace(plain, redis_url=redis_url), passwords=FAST_PASSWORDS)
    assert isinstance(services.events, RedisBroker)
    assert services.orders.events is services.events
    # one link per process, to the configured Redis, shared with the limiter
    assert services.events.link is services.redis
    assert services.redis is not None and services.redis.url == redis_url
    await services.aclose()
