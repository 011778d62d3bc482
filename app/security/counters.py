"""The limiter's counters: the in-process storage (the embedded default) and the Lua scripts
that give Redis the same atomic multi-counter steps (login admission, several budgets
settled at once). `app/security/ratelimit.py` decides what to count; this module only
counts, the same way in both places."""

from __future__ import annotations

import time

from limits.aio.storage import Storage

# Login admission in Redis, one atomic step (the semantics of InProcessStorage.login_admit).
# KEYS: failures and until (ms since the epoch) of each key, in pairs; ARGV: base, cap and
# time to live in ms, then each key's free failures. Returns 0 (admitted) or ms to wait.
LOGIN_ADMIT_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local base, cap, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
for i = 1, #KEYS, 2 do
  local untilms = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if untilms - now > wait then wait = untilms - now end
end
if wait > 0 then return wait end
for i = 1, #KEYS, 2 do
  local count = redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ttl)
  local free = tonumber(ARGV[4 + (i - 1) / 2])
  if count > free then
    local delay = base * 2 ^ math.min(count - free - 1, 30)
    if delay > cap then delay = cap end
    redis.call('SET', KEYS[i + 1], string.format('%d', now + delay), 'PX', ttl)
  end
end
return 0
"""
# KEYS: failures/until pairs to clear (ARGV[1] of them), then failure counts to refund.
LOGIN_SETTLE_SCRIPT = """
local cleared = tonumber(ARGV[1])
for i = 1, #KEYS do
  if i <= cleared then
    redis.call('DEL', KEYS[i])
  elseif tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then
    redis.call('DECR', KEYS[i])
  end
end
return 0
"""


# Several budgets settled as one atomic step (`Limiter.settle`): one round trip instead of one
# per budget. KEYS: the budgets' counter keys (the keys `limits` uses, so that its own
# operations and these see the same counters); ARGV: per key, its operation, limit and window
# in seconds. Operations: 'u' refuses when the count has reached the limit (a lockout:
# limits' `test`), 'w' refuses when the count is over it (limits' `test` with cost 0), 'h'
# counts one and refuses when that took it over (limits' `hit`), 'c' counts one (`hit`,
# answer ignored). Stops at the first refusal: returns {its 1-based index, its PTTL}, or
# {0, 0} when every step passed.
SETTLE_SCRIPT = """
for i = 1, #KEYS do
  local op, limit, window = ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1]), ARGV[3 * i]
  local key = KEYS[i]
  if op == 'u' or op == 'w' then
    local count = tonumber(redis.call('GET', key) or '0')
    if (op == 'u' and count >= limit) or (op == 'w' and count > limit) then
      return {i, redis.call('PTTL', key)}
    end
  else
    local count = redis.call('INCRBY', key, 1)
    if count == 1 then redis.call('EXPIRE', key, window) end
    if op == 'h' and count > limit then return {i, redis.call('PTTL', key)} end
  end
end
return {0, 0}
"""
UNLOCKED, WITHIN, HIT, COUNT = "u", "w", "h", "c"


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

    # -- login admission (the same semantics as `LOGIN_ADMIT_SCRIPT` in Redis) -----------------
    def login_admit(
        self, keys: tuple[str, ...], frees: tuple[int, ...], base: float, cap: float, ttl: int
    ) -> float:
        """Admit one login attempt for every key at once, or none: seconds to wait (0 when
        admitted). No await inside, so concurrent attempts are admitted one at a time."""
        now = time.time()
        self._sweep(now)
        wait = max((self._live(f"login-until:{key}", now) - now for key in keys), default=0.0)
        if wait > 0:
            return wait
        for key, free in zip(keys, frees, strict=True):
            count = int(self._live(f"login-failures:{key}", now)) + 1
            self._counters[f"login-failures:{key}"] = (count, now + ttl)
            if count > free:
                delay = min(cap, base * 2 ** min(count - free - 1, 30))
                self._counters[f"login-until:{key}"] = (int((now + delay) * 1000), now + ttl)
        return 0.0

    def login_settle(self, clear: tuple[str, ...], refund: tuple[str, ...]) -> None:
        now = time.time()
        for key in clear:
            self._counters.pop(f"login-failures:{key}", None)
            self._counters.pop(f"login-until:{key}", None)
        for key in refund:
            count, expires = self._counters.get(f"login-failures:{key}", (0, 0.0))
            if count > 0 and expires > now:
                self._counters[f"login-failures:{key}"] = (count - 1, expires)

    # -- several budgets at once (the semantics of `SETTLE_SCRIPT` in Redis) --------------------
    def settle(self, steps: tuple[tuple[str, str, int, int], ...]) -> tuple[int, float]:
        """Apply (operation, key, limit, window) steps in order with no await in between:
        (0, 0) when all pass, else (1-based index of the refusing step, seconds until its
        counter's window ends)."""
        now = time.time()
        self._sweep(now)
        for index, (op, key, limit, window) in enumerate(steps, start=1):
            count, expires = self._counters.get(key, (0, 0.0))
            if expires <= now:
                count, expires = 0, now + window
            if op in (HIT, COUNT):
                count += 1
                self._counters[key] = (count, expires)
                refused = op == HIT and count > limit
            else:
                refused = count >= limit if op == UNLOCKED else count > limit
            if refused:
                return index, max(0.0, expires - now)
        return 0, 0.0

    def _live(self, key: str, now: float) -> float:
        """A login-until value in seconds (stored in ms), a failure count as is; 0 if gone."""
        count, expires = self._counters.get(key, (0, 0.0))
        if expires <= now:
            return 0.0
        return count / 1000 if key.startswith("login-until:") else float(count)

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_SECONDS
        expired = [key for key, (_, expires) in self._counters.items() if expires <= now]
        for key in expired:
            del self._counters[key]
