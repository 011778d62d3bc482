"""The one limiter every code lookup goes through (DESIGN §4).

Fixed windows from the `limits` library: `hit` increments first and compares after (an
atomic INCR in Redis, an increment with no await in between in memory), so concurrent
aliased resolvers can never together exceed a budget. Storage is in-process by default
and Redis when `REDIS_URL` is set, reached through `RedisLink` (async, bounded by a
timeout, behind a circuit breaker); if Redis cannot be reached, lookups fail closed
(SERVICE_UNAVAILABLE) and, while the breaker is open, at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from app import metrics
from app.errors import RateLimited, ServiceUnavailable
from app.redis_link import RedisLink
from app.settings import RateLimits

T = TypeVar("T")


class InProcessStorage(Storage):
    """Fixed-window counters in this process's memory: the embedded default.

    Implements the public storage interface of `limits.aio` (incr, get, get_expiry,
    check, reset, clear). Everything runs on the event loop with no await inside an
    operation, so an increment is atomic without a lock. Keys nobody reads again are
    swept inline, at most once a second (limits' own MemoryStorage sweeps every key from a
    new task on each increment, which costs O(keys) per request).
    """

    STORAGE_SCHEME = None  # built directly, never from a URI
    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (count, expires at)
        self._next_sweep = time.time() + self.SWEEP_SECONDS

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ValueError

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        self._sweep(now)
        count, expires = self._counters.get(key, (0, 0.0))
        if expires <= now:
            count, expires = 0, now + expiry
        count += amount
        self._counters[key] = (count, expires)
        return count

    async def get(self, key: str) -> int:
        count, expires = self._counters.get(key, (0, 0.0))
        return count if expires > time.time() else 0

    async def get_expiry(self, key: str) -> float:
        now = time.time()
        _, expires = self._counters.get(key, (0, now))
        return expires if expires > now else now

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        cleared = len(self._counters)
        self._counters.clear()
        return cleared

    async def clear(self, key: str) -> None:
        self._counters.pop(key, None)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_SECONDS
        expired = [key for key, (_, expires) in self._counters.items() if expires <= now]
        for key in expired:
            del self._counters[key]


@dataclass(frozen=True)
class Bucket:
    name: str
    item: RateLimitItem


class Limiter:
    def __init__(self, limits: RateLimits, redis: RedisLink | None = None) -> None:
        self.config = limits
        self._redis = redis
        self.storage: Storage
        if redis is not None:
            # the link's pool (documented `connection_pool` option; typed narrower by limits)
            shared: dict[str, Any] = {"connection_pool": redis.pool}
            self.storage = RedisStorage(
                "async+" + redis.url, implementation="redispy", key_prefix="orders-api", **shared
            )
        else:
            self.storage = InProcessStorage()
        self._strategy = FixedWindowRateLimiter(self.storage)
        self.lookups_per_user = Bucket("lookup:user", parse(limits.lookups_per_user))
        self.lookups_per_ip = Bucket("lookup:ip", parse(limits.lookups_per_ip))
        self.failures_per_user = Bucket("failed:user", parse(limits.failed_lookups_per_user))
        self.failures_per_ip = Bucket("failed:ip", parse(limits.failed_lookups_per_ip))
        self.support_per_agent = Bucket("support:agent", parse(limits.support_lookups_per_agent))
        self.tracking_views = Bucket("tracking:view", parse(limits.tracking_views_per_token_ip))

    # -- primitives ---------------------------------------------------------------------
    async def _guard(self, make: Callable[[], Awaitable[T]]) -> T:
        """One storage operation; storage down means SERVICE_UNAVAILABLE, never unlimited."""
        if self._redis is not None:
            return await self._redis.call(make)
        try:
            return await make()
        except Exception as exc:
            raise ServiceUnavailable() from exc

    async def _retry_after(self, bucket: Bucket, key: str) -> int:
        stats: Any = await self._guard(
            lambda: self._strategy.get_window_stats(bucket.item, bucket.name, key)
        )
        return max(1, math.ceil(float(stats.reset_time) - time.time()))

    async def hit(self, bucket: Bucket, key: str) -> None:
        """Spend one unit of `bucket` for `key`, or raise RateLimited."""
        allowed = await self._guard(lambda: self._strategy.hit(bucket.item, bucket.name, key))
        if not allowed:
            metrics.rate_limit_rejected(bucket.name)
            raise RateLimited(retry_after=await self._retry_after(bucket, key))

    async def ensure_not_exhausted(self, bucket: Bucket, key: str) -> None:
        """Refuse while `bucket` is spent for `key` (a lockout), without spending it."""
        if not await self._guard(lambda: self._strategy.test(bucket.item, bucket.name, key)):
            metrics.rate_limit_rejected(bucket.name)
            raise RateLimited(retry_after=await self._retry_after(bucket, key))

    async def record(self, bucket: Bucket, key: str) -> None:
        """Count an event (a failure) without refusing this one."""
        await self._guard(lambda: self._strategy.hit(bucket.item, bucket.name, key))

    async def remaining(self, bucket: Bucket, key: str) -> int:
        stats: Any = await self._guard(
            lambda: self._strategy.get_window_stats(bucket.item, bucket.name, key)
        )
        return int(stats.remaining)

    # -- code lookups -------------------------------------------------------------------
    async def charge_lookup(self, user_key: str, ip: str) -> None:
        """Once per resolution of anything that takes a code: lockout first, then budgets."""
        await self.ensure_not_exhausted(self.failures_per_user, user_key)
        await self.ensure_not_exhausted(self.failures_per_ip, ip)
        await self.hit(self.lookups_per_user, user_key)
        await self.hit(self.lookups_per_ip, ip)

    async def record_failed_lookup(self, user_key: str, ip: str) -> None:
        await self.record(self.failures_per_user, user_key)
        await self.record(self.failures_per_ip, ip)

    # -- login back-off -----------------------------------------------------------------
    async def ensure_login_allowed(self, *keys: str) -> None:
        """After n failures for an email or IP, wait base * 2^(n-1) seconds (capped)."""
        for key in keys:
            failures = await self._guard(partial(self.storage.get, f"login-failures:{key}"))
            if failures <= 0:
                continue
            lock_key = f"login-lock:{key}:{failures}"
            if await self._guard(partial(self.storage.get, lock_key)) > 0:
                expiry = await self._guard(partial(self.storage.get_expiry, lock_key))
                metrics.rate_limit_rejected("login")
                raise RateLimited(retry_after=max(1, math.ceil(expiry - time.time())))

    async def record_login_failure(self, *keys: str) -> None:
        cap = self.config.login_backoff_cap_seconds
        for key in keys:
            failures = await self._guard(
                partial(self.storage.incr, f"login-failures:{key}", cap * 2)
            )
            delay = min(cap, self.config.login_backoff_base_seconds * 2 ** min(failures - 1, 30))
            await self._guard(partial(self.storage.incr, f"login-lock:{key}:{failures}", delay))

    async def record_login_success(self, *keys: str) -> None:
        for key in keys:
            await self._guard(partial(self.storage.clear, f"login-failures:{key}"))

    async def ping(self) -> bool:
        if self._redis is not None:
            return await self._redis.ping()
        return True

    async def reset(self) -> None:
        await self._guard(self.storage.reset)
