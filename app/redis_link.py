"""The process's one link to Redis: an async connection pool behind a circuit breaker.

Redis holds the shared rate-limit budgets and carries live updates between instances.
Every call goes through `RedisLink.call`, which bounds it by `timeout` and, after a
failure, fails the next calls at once (SERVICE_UNAVAILABLE: budgets are never silently
unlimited) while a background probe pings Redis until it answers again. A hung Redis (a
server that accepts and never answers, a partition without a reset) therefore costs one
request the timeout, the rest nothing, and recovery needs no restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio
from redis.exceptions import RedisError

from app import metrics
from app.errors import ServiceUnavailable

log = logging.getLogger("app.redis")

T = TypeVar("T")

CALL_TIMEOUT_SECONDS = 1.0
PROBE_INTERVAL_SECONDS = 0.5


def database_of(url: str) -> int:
    """The numbered Redis database a `redis://` URL selects (0 when it names none)."""
    return int(redis.asyncio.ConnectionPool.from_url(url).connection_kwargs.get("db") or 0)


class CircuitBreaker:
    """Closed: calls go through. Open (after a failure): calls are refused at once until a
    probe succeeds. Pure state, no I/O: the probing is the link's."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.opened_at: float | None = None
        self.failures = 0

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def trip(self) -> bool:
        """Record a failure; True when this one opened the breaker."""
        self.failures += 1
        if self.opened_at is None:
            self.opened_at = self._clock()
            return True
        return False

    def reset(self) -> None:
        self.opened_at = None
        self.failures = 0


class RedisLink:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = CALL_TIMEOUT_SECONDS,
        probe_interval: float = PROBE_INTERVAL_SECONDS,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.probe_interval = probe_interval
        self.pool = redis.asyncio.ConnectionPool.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=0,
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool)
        self.breaker = CircuitBreaker()
        self._probe: asyncio.Task[None] | None = None

    async def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation within `timeout`; SERVICE_UNAVAILABLE when Redis is
        down, hung, or known to be so (the breaker is open)."""
        if self.breaker.is_open:
            metrics.redis_refused()
            raise ServiceUnavailable()
        try:
            async with asyncio.timeout(self.timeout):
                return await make()
        except (RedisError, OSError, TimeoutError) as exc:
            self.failed(exc)
            raise ServiceUnavailable() from exc

    def failed(self, exc: BaseException) -> None:
        """A call failed: open the breaker and start probing for recovery."""
        if self.breaker.trip():
            log.warning("redis unavailable, failing fast: %s", type(exc).__name__)
            metrics.redis_breaker(open_=True)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        while self.breaker.is_open:
            await asyncio.sleep(self.probe_interval)
            try:
                async with asyncio.timeout(self.timeout):
                    await self.client.ping()
            except (RedisError, OSError, TimeoutError):
                continue
            # Connections opened before the outage are dead: drop the idle ones, or the next
            # calls would take them, fail, and open the breaker again.
            with contextlib.suppress(Exception):
                await self.pool.disconnect(inuse_connections=False)
            self.breaker.reset()
            metrics.redis_breaker(open_=False)
            log.info("redis answers again")

    async def ping(self) -> bool:
        """For /readyz: Redis answers now (does not open or close the breaker)."""
        try:
            async with asyncio.timeout(self.timeout):
                return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._probe
        with contextlib.suppress(Exception):
            await self.client.aclose()
        with contextlib.suppress(Exception):
            await self.pool.disconnect()
