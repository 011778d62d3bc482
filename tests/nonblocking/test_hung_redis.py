"""A Redis that accepts connections and never answers (a hung server, a partition without a
reset): the first code lookup fails closed within Redis's timeout, the following ones at
once (the circuit breaker is open), everything that does not need Redis is not slowed at
all, and lookups work again without a restart once Redis answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.conftest import REDIS_TEST_URL, service_unreachable
from tests.e2e.conftest import LiveServer
from tests.nonblocking.conftest import ORDER, Client, Database, error_codes, log_in, order_code
from tests.nonblocking.test_slow_payment import _carrier_event
from tests.scale.proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

PRODUCTS = "{ products(first: 3) { edges { node { sku } } } }"
MY_ORDERS = "{ myOrders(first: 5) { edges { node { code status } } } }"
REDIS_TIMEOUT = 1.0  # app/redis_link.py CALL_TIMEOUT_SECONDS
FAST = 0.2


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    try:
        redis.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        service_unreachable("Redis", str(exc))
    redis.Redis.from_url(REDIS_TEST_URL).flushdb()
    address = REDIS_TEST_URL.split("//", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    proxy = TcpProxy((host, int(port)))
    proxy.restore()
    try:
        yield proxy
    finally:
        proxy.cut()


def test_a_hung_redis_fails_lookups_fast_leaves_the_rest_alone_and_recovers(
    database: Database, start_server: Callable[..., LiveServer], redis_proxy: TcpProxy
) -> None:
    # given an instance whose Redis is reached through a proxy, and alice logged in
    db = REDIS_TEST_URL.rsplit("/", 1)[1]
    server = start_server(REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/{db}")
    alice = log_in(server, "alice@example.com")
    code = order_code(alice, "PLACED")
    alice.data(ORDER, code=code)
    anonymous = Client(server)
    # when Redis stops answering
    redis_proxy.hang()
    # then the first lookup fails closed within Redis's timeout ...
    first_time, first = alice.timed(ORDER, code=code)
    assert error_codes(first) == ["SERVICE_UNAVAILABLE"], first.text
    assert first_time < REDIS_TIMEOUT + 0.5, first_time
    # ... and the next ones at once
    for _ in range(5):
        elapsed, again = alice.timed(ORDER, code=code)
        assert error_codes(again) == ["SERVICE_UNAVAILABLE"], again.text
        assert elapsed < FAST, elapsed
    # and what does not need Redis is not slowed at all
    for query, client in ((MY_ORDERS, alice), (PRODUCTS, anonymous)):
        elapsed, answer = client.timed(query)
        assert answer.status_code == 200 and not answer.json().get("errors"), answer.text
        assert elapsed < FAST, (query, elapsed)
    elapsed, webhook = _carrier_event(server, "DEMO-ALICE-2")  # publishes a live update
    assert webhook.status_code == 202 and elapsed < FAST, (webhook.text, elapsed)
    ready = anonymous.http.get(f"{server.base_url}/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] is False
    # when Redis answers again, lookups work again, with no restart
    redis_proxy.unhang()
    deadline = time.monotonic() + 10
    while True:
        answer = alice.post(ORDER, code=code)
        if answer.status_code == 200 and not answer.json().get("errors"):
            break
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)
    assert answer.json()["data"]["order"]["code"] == code
