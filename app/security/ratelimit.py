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
from dataclasses import dataclass, field
from typing import Any, TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from app import metrics
from app.errors import RateLimited, ServiceUnavailable
from app.redis_link import RedisLink
from app.security.counters import (
    COUNT,
    HIT,
    LOGIN_ADMIT_SCRIPT,
    LOGIN_SETTLE_SCRIPT,
    SETTLE_SCRIPT,
    UNLOCKED,
    WITHIN,
    InProcessStorage,
)
from app.settings import RateLimits

T = TypeVar("T")
KEY_PREFIX = "orders-api"


@dataclass(frozen=True)
class Bucket:
    name: str
    item: RateLimitItem
    # `item.key_for(name, key)` split around the key (it formats five values a call, three
    # times a lookup) and `item.get_expiry()`: what `settle` sends, worked out once
    head: str = field(init=False, repr=False, compare=False)
    tail: str = field(init=False, repr=False, compare=False)
    window: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head, marker, tail = self.item.key_for(self.name, _KEY_MARK).partition(_KEY_MARK)
        assert marker, "limits' key_for no longer holds the key as given"
        object.__setattr__(self, "head", head)
        object.__setattr__(self, "tail", tail)
        object.__setattr__(self, "window", self.item.get_expiry())

    def key_for(self, key: str) -> str:
        """The counter's storage key for `key`: `self.item.key_for(self.name, key)`."""
        return f"{self.head}{key}{self.tail}"


_KEY_MARK = "\x00key\x00"


class Limiter:
    def __init__(self, limits: RateLimits, redis: RedisLink | None = None) -> None:
        self.config = limits
        self._redis = redis
        self.storage: Storage
        if redis is not None:
            # the link's pool (documented `connection_pool` option; typed narrower by limits)
            shared: dict[str, Any] = {"connection_pool": redis.pool}
            self.storage = RedisStorage(
                "async+" + redis.url, implementation="redispy", key_prefix=KEY_PREFIX, **shared
            )
        else:
            self.storage = InProcessStorage()
        self._strategy = FixedWindowRateLimiter(self.storage)
        self._settle_script = (
            redis.client.register_script(SETTLE_SCRIPT) if redis is not None else None
        )
        self.lookups_per_user = Bucket("lookup:user", parse(limits.lookups_per_user))
        self.lookups_per_ip = Bucket("lookup:ip", parse(limits.lookups_per_ip))
        self.failures_per_user = Bucket("failed:user", parse(limits.failed_lookups_per_user))
        self.failures_per_ip = Bucket("failed:ip", parse(limits.failed_lookups_per_ip))
        self.support_per_agent = Bucket("support:agent", parse(limits.support_lookups_per_agent))
        self.tracking_views = Bucket("tracking:view", parse(limits.tracking_views_per_token_ip))
        self.staff_lookups_per_user = Bucket("staff:user", parse(limits.staff_lookups_per_user))
        self.staff_failures_per_user = Bucket(
            "staff-failed:user", parse(limits.staff_failed_lookups_per_user)
        )
        self.registrations_per_ip = Bucket("register:ip", parse(limits.registrations_per_ip))

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

    async def ensure_within(self, bucket: Bucket, key: str) -> None:
        """Refuse when `bucket` for `key` has counted more than its amount (a unit already
        spent by `record` for this request is within it while the count allows it)."""
        if not await self._guard(
            lambda: self._strategy.test(bucket.item, bucket.name, key, cost=0)
        ):
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

    async def settle(self, *steps: tuple[str, Bucket, str]) -> None:
        """Several budgets in one atomic step — one Redis round trip however many — in
        order, stopping at the first that refuses: (UNLOCKED, bucket, key) refuses while the
        bucket is spent (`ensure_not_exhausted`), (WITHIN, …) when it is over its amount
        (`ensure_within`), (HIT, …) spends one unit or refuses (`hit`), (COUNT, …) counts one
        (`record`). The counters are the ones the single operations above use."""
        plan = tuple(
            (op, bucket.key_for(key), bucket.item.amount, bucket.window)
            for op, bucket, key in steps
        )
        storage = self.storage
        if isinstance(storage, InProcessStorage):
            refused, wait = storage.settle(plan)
        else:
            script = self._settle_script
            assert script is not None
            keys = [f"{KEY_PREFIX}:{key}" for _, key, _, _ in plan]  # as limits' RedisStorage
            args = [value for op, _, limit, window in plan for value in (op, limit, window)]
            index, pttl = await self._guard(lambda: script(keys=keys, args=args))
            refused, wait = int(index), max(0, int(pttl)) / 1000
        if refused:
            metrics.rate_limit_rejected(steps[refused - 1][1].name)
            raise RateLimited(retry_after=max(1, math.ceil(wait)))

    # -- code lookups -------------------------------------------------------------------
    # The rule (docs/security.md §3): the user's own budgets are settled before the code is
    # read; the address's budgets only ever refuse a lookup that does NOT turn out to be
    # the caller's own (they are settled after the one read, by `settle_failed_lookup`), so
    # neighbours behind one address never cost a customer her own orders, while what an
    # address can learn about codes that are not its own stays capped.
    async def charge_lookup(self, user_key: str, ip: str) -> None:
        """Once per resolution of anything that takes a code: the user's lockout, then one
        unit of the user's budget; the address's lookup budget is counted, not settled."""
        await self.settle(
            (UNLOCKED, self.failures_per_user, user_key),
            (HIT, self.lookups_per_user, user_key),
            (COUNT, self.lookups_per_ip, ip),
        )

    async def charge_staff_lookup(self, user_key: str) -> None:
        """A staff door, for staff with the role: the staff budgets of the user only."""
        await self.settle(
            (UNLOCKED, self.staff_failures_per_user, user_key),
            (HIT, self.staff_lookups_per_user, user_key),
        )

    async def charge_support_lookup(self, agent_key: str) -> None:
        """A support lookup (`supportOrder`, `supportSearch`): the agent's staff lockout, then
        one unit of the support budget."""
        await self.settle(
            (UNLOCKED, self.staff_failures_per_user, agent_key),
            (HIT, self.support_per_agent, agent_key),
        )

    async def settle_typo(self, ip: str) -> None:
        """A code refused by its check symbol: no failure, but it is not the caller's order,
        so the address's lookup budget applies (it was counted by `charge_lookup`)."""
        await self.ensure_within(self.lookups_per_ip, ip)

    async def settle_failed_lookup(self, user_key: str, ip: str) -> None:
        """A well-formed code that is unknown or not the caller's: one failure for the user
        and the address, increment-then-compare, so that however many arrive at once, no
        more are answered than the budgets allow; the rest are RATE_LIMITED, the same answer
        for a real code and an unknown one."""
        await self.settle(
            (HIT, self.failures_per_user, user_key),
            (WITHIN, self.lookups_per_ip, ip),
            (HIT, self.failures_per_ip, ip),
        )

    async def settle_failed_staff_lookup(self, user_key: str) -> None:
        await self.hit(self.staff_failures_per_user, user_key)

    async def charge_registration(self, ip: str) -> None:
        await self.hit(self.registrations_per_ip, ip)

    # -- login back-off -----------------------------------------------------------------
    async def admit_login(self, email_key: str, ip_key: str) -> None:
        """Count one login attempt BEFORE its password is checked, or refuse it.

        One atomic step over both keys (a Lua script in Redis, a synchronous method in
        process): refused while either key is in back-off; otherwise each key's failure count
        goes up by one and, past the key's free failures, its back-off starts: base *
        2^(k-1) seconds for its k-th counted attempt, at most the cap. The email has no free
        failures, so however many attempts arrive at once, one is checked per back-off step;
        the address gets `login_ip_free_failures` (a shared address is many people) before
        its own back-off starts. A success refunds the attempt (`login_succeeded`).
        """
        keys = (f"email:{email_key}", f"ip:{ip_key}")
        frees = (0, self.config.login_ip_free_failures)
        base = float(self.config.login_backoff_base_seconds)
        cap = float(self.config.login_backoff_cap_seconds)
        ttl = max(1, int(cap * 2))
        storage = self.storage
        if isinstance(storage, InProcessStorage):
            wait = storage.login_admit(keys, frees, base, cap, ttl)
        else:
            assert self._redis is not None
            client = self._redis.client
            redis_keys = [
                f"{KEY_PREFIX}:login-{kind}:{key}" for key in keys for kind in ("failures", "until")
            ]
            args = [int(base * 1000), int(cap * 1000), ttl * 1000, *frees]
            wait_ms = await self._guard(
                lambda: client.eval(LOGIN_ADMIT_SCRIPT, len(redis_keys), *redis_keys, *args)
            )
            wait = int(wait_ms) / 1000
        if wait > 0:
            metrics.rate_limit_rejected("login")
            raise RateLimited(retry_after=max(1, math.ceil(wait)))

    async def login_succeeded(self, email_key: str, ip_key: str) -> None:
        """The email's back-off starts over; the address gets its attempt back (a success is
        not a failure), its back-off, if one started, runs out as set."""
        clear, refund = (f"email:{email_key}",), (f"ip:{ip_key}",)
        storage = self.storage
        if isinstance(storage, InProcessStorage):
            storage.login_settle(clear, refund)
            return
        assert self._redis is not None
        client = self._redis.client
        redis_keys = [
            *(
                f"{KEY_PREFIX}:login-{kind}:{key}"
                for key in clear
                for kind in ("failures", "until")
            ),
            *(f"{KEY_PREFIX}:login-failures:{key}" for key in refund),
        ]
        await self._guard(
            lambda: client.eval(LOGIN_SETTLE_SCRIPT, len(redis_keys), *redis_keys, 2 * len(clear))
        )

    async def ping(self) -> bool:
        if self._redis is not None:
            return await self._redis.ping()
        return True

    async def reset(self) -> None:
        await self._guard(self.storage.reset)
