"""RedisBroker against the real Redis: the Broker protocol's promises, across two brokers
(two instances) and from worker threads; build_services picks it when REDIS_URL is set."""

from __future__ import annotations

import asyncio
import threading
import uuid
from dataclasses import replace

import pytest
import redis

from app.container import build_services
from app.errors import ServiceUnavailable
from app.events.broker import InProcessBroker
from app.events.redis_broker import RedisBroker
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


async def test_an_event_published_by_one_instance_reaches_a_subscriber_of_another(
    redis_url: str,
) -> None:
    # given two brokers, as two API instances would have, and a subscriber on the second
    instance_a, instance_b = RedisBroker(redis_url), RedisBroker(redis_url)
    topic = unique_topic()
    async with instance_b.subscribe([topic]) as events:
        # when the first publishes from a worker thread (services publish after commit)
        worker = threading.Thread(
            target=instance_a.publish, args=(topic, {"type": "SHIPPED", "status": "SHIPPED"})
        )
        worker.start()
        worker.join()
        # then the subscriber gets the topic and the JSON payload back as a dict
        assert await next_event(events) == (topic, {"type": "SHIPPED", "status": "SHIPPED"})
    instance_a.close()
    instance_b.close()


async def test_channels_carry_the_orders_api_prefix(redis_url: str) -> None:
    # given a raw Redis subscriber on the prefixed channel
    topic = unique_topic()
    raw = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    raw.subscribe(f"orders-api:{topic}")
    raw.get_message(timeout=1)
    # when the broker publishes on the bare topic
    RedisBroker(redis_url).publish(topic, {"type": "CHANGED"})
    # then the message is on "orders-api:<topic>", as JSON
    message = raw.get_message(timeout=2)
    raw.close()
    assert message is not None
    assert message["channel"] == f"orders-api:{topic}".encode()
    assert message["data"] == b'{"type": "CHANGED"}'


async def test_a_subscriber_gets_its_topics_only_and_unsubscribes_on_exit(redis_url: str) -> None:
    # given a subscriber of two topics, and a third topic nobody here follows
    broker = RedisBroker(redis_url)
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
        counts = dict(redis.Redis.from_url(redis_url).pubsub_numsub(f"orders-api:{mine}"))
        assert counts[f"orders-api:{mine}".encode()] == 1
    # and leaving the block releases the Redis subscription
    counts = dict(redis.Redis.from_url(redis_url).pubsub_numsub(f"orders-api:{mine}"))
    assert counts[f"orders-api:{mine}".encode()] == 0
    broker.close()


async def test_redis_down_publish_is_dropped_and_subscribe_fails_clearly() -> None:
    # given a broker whose Redis cannot be reached
    broker = RedisBroker(UNREACHABLE)
    # when a service publishes, then it does not raise (its change is committed already)
    broker.publish(unique_topic(), {"type": "CHANGED"})
    assert broker.ping() is False
    # when a client subscribes, then it gets SERVICE_UNAVAILABLE rather than a silent stream
    with pytest.raises(ServiceUnavailable):
        async with broker.subscribe([unique_topic()]):
            pass


def test_build_services_uses_redis_when_redis_url_is_set(redis_url: str, tmp_path: object) -> None:
    # given settings without and with REDIS_URL
    plain = Settings(database_url="sqlite:///:memory:", jwt_secret="x" * 48)
    # when the services are built, then the broker follows the setting
    services = build_services(plain, passwords=FAST_PASSWORDS)
    assert isinstance(services.events, InProcessBroker)
    services.close()
    services = build_services(replace(plain, redis_url=redis_url), passwords=FAST_PASSWORDS)
    assert isinstance(services.events, RedisBroker)
    assert services.orders.events is services.events
    services.close()
