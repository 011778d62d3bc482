"""The one limiter every code lookup goes through (DESIGN §4).

Fixed windows from the `limits` library: `hit` increments first and compares after (an
atomic INCR in Redis, a locked increment in memory), so concurrent aliased resolvers can
never together exceed a budget. Storage is in-process by default and Redis when
`REDIS_URL` is set; if Redis cannot be reached, lookups fail closed (SERVICE_UNAVAILABLE).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import FixedWindowRateLimiter

from app import metrics
from app.errors import RateLimited, ServiceUnavailable
from app.settings import RateLimits


class InProcessStorage(MemoryStorage):
    """limits' MemoryStorage without its expiry thread.

    MemoryStorage starts a threading.Timer (10 ms) whenever the previous one has finished,
    so under load it starts ~100 threads a second, and each start waits for the new thread
    to run: a GIL hand-off that cost ~15 % of an order(code) request (scripts/bench).
    Reads already drop an expired key when they meet it; keys nobody reads again are swept
    here, inline, at most once a second.
    """

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.timer.cancel()
        self._next_sweep = time.time() + self.SWEEP_SECONDS

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the timer (name-mangled)
        now = time.time()  # the clock limits itself uses (and tests replace)
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Bucket:
    name: str
    item: RateLimitItem


class Limiter:
    def __init__(self, limits: RateLimits, redis_url: str | None = None) -> None:
        self.config = limits
        self.storage: Any
        if redis_url:
            self.storage = RedisStorage(
                redis_url,
                key_prefix="orders-api",
                wrap_exceptions=True,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
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
    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # storage down: never silently unlimited
            raise ServiceUnavailable() from exc

    def _retry_after(self, bucket: Bucket, key: str) -> int:
        reset, _ = self._guard(self._strategy.get_window_stats, bucket.item, bucket.name, key)
        return max(1, math.ceil(float(reset) - time.time()))

    def hit(self, bucket: Bucket, key: str) -> None:
        """Spend one unit of `bucket` for `key`, or raise RateLimited."""
        allowed = self._guard(self._strategy.hit, bucket.item, bucket.name, key)
        if not allowed:
            metrics.rate_limit_rejected(bucket.name)
            raise RateLimited(retry_after=self._retry_after(bucket, key))

    def ensure_not_exhausted(self, bucket: Bucket, key: str) -> None:
        """Refuse while `bucket` is spent for `key` (a lockout), without spending it."""
        if not self._guard(self._strategy.test, bucket.item, bucket.name, key):
            metrics.rate_limit_rejected(bucket.name)
            raise RateLimited(retry_after=self._retry_after(bucket, key))

    def record(self, bucket: Bucket, key: str) -> None:
        """Count an event (a failure) without refusing this one."""
        self._guard(self._strategy.hit, bucket.item, bucket.name, key)

    def remaining(self, bucket: Bucket, key: str) -> int:
        _, remaining = self._guard(self._strategy.get_window_stats, bucket.item, bucket.name, key)
        return int(remaining)

    # -- code lookups -------------------------------------------------------------------
    def charge_lookup(self, user_key: str, ip: str) -> None:
        """Once per resolution of anything that takes a code: lockout first, then budgets."""
        self.ensure_not_exhausted(self.failures_per_user, user_key)
        self.ensure_not_exhausted(self.failures_per_ip, ip)
        self.hit(self.lookups_per_user, user_key)
        self.hit(self.lookups_per_ip, ip)

    def record_failed_lookup(self, user_key: str, ip: str) -> None:
        self.record(self.failures_per_user, user_key)
        self.record(self.failures_per_ip, ip)

    # -- login back-off -----------------------------------------------------------------
    def ensure_login_allowed(self, *keys: str) -> None:
        """After n failures for an email or IP, wait base * 2^(n-1) seconds (capped)."""
        for key in keys:
            failures = self._guard(self.storage.get, f"login-failures:{key}")
            if failures <= 0:
                continue
            lock_key = f"login-lock:{key}:{failures}"
            if self._guard(self.storage.get, lock_key) > 0:
                expiry = self._guard(self.storage.get_expiry, lock_key)
                metrics.rate_limit_rejected("login")
                raise RateLimited(retry_after=max(1, math.ceil(expiry - time.time())))

    def record_login_failure(self, *keys: str) -> None:
        cap = self.config.login_backoff_cap_seconds
        for key in keys:
            failures = self._guard(self.storage.incr, f"login-failures:{key}", cap * 2)
            delay = min(cap, self.config.login_backoff_base_seconds * 2 ** min(failures - 1, 30))
            self._guard(self.storage.incr, f"login-lock:{key}:{failures}", delay)

    def record_login_success(self, *keys: str) -> None:
        for key in keys:
            self._guard(self.storage.clear, f"login-failures:{key}")

    def ping(self) -> bool:
        try:
            return bool(self.storage.check())
        except Exception:
            return False

    def reset(self) -> None:
        self._guard(self.storage.reset)
