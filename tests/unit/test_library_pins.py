"""Pins of the library behaviour the app relies on beyond their public contracts. Each test
fails if a new version of the library changes under the app, before the app misbehaves.

* `limits`: the limiter's one-round-trip settle script (app/security/counters.py, `SETTLE_SCRIPT`)
  writes the counters itself, under the key `limits`' RedisStorage uses
  (`<key_prefix>:<item.key_for(...)>`, a plain integer with a TTL), so that the strategy's
  own reads (`remaining`, `hit`) and the script count the same thing.
* strawberry: `DomainErrorMasking` (app/graphql/errors.py) overrides the private
  `MaskErrors._process_result`, which `MaskErrors.on_operation` must call with the result
  of every operation (and `_process_errors`, which the override calls in turn).
"""

from __future__ import annotations

import inspect
from typing import Any

import redis.asyncio as aioredis
import strawberry
from limits import parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from strawberry.extensions import MaskErrors

from app.graphql.errors import DomainErrorMasking
from app.security.ratelimit import KEY_PREFIX


async def test_limits_redis_storage_keeps_its_counters_where_the_settle_script_writes(
    redis_url: str,
) -> None:
    item = parse("5/minute")
    client = aioredis.Redis.from_url(redis_url)
    # on a pool of our own, as the app does (the documented `connection_pool` option)
    shared: dict[str, Any] = {"connection_pool": client.connection_pool}
    storage = RedisStorage(
        "async+" + redis_url, implementation="redispy", key_prefix=KEY_PREFIX, **shared
    )
    strategy = FixedWindowRateLimiter(storage)
    try:
        # given a counter written as the settle script writes it (INCR + PEXPIRE)
        key = f"{KEY_PREFIX}:{item.key_for('pin', 'written-by-script')}"
        await client.incr(key)
        await client.pexpire(key, 60_000)
        # then limits reads it as one hit of that window
        stats = await strategy.get_window_stats(item, "pin", "written-by-script")
        assert stats.remaining == 4
        # and a hit made by limits lands under the same key, as a plain counter
        assert await strategy.hit(item, "pin", "written-by-limits")
        written = await client.get(f"{KEY_PREFIX}:{item.key_for('pin', 'written-by-limits')}")
        assert written is not None and int(written) == 1
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()


def test_mask_errors_processes_each_result_through_the_overridden_method() -> None:
    seen: list[object] = []

    class Recording(MaskErrors):
        def _process_result(self, result: object) -> None:
            seen.append(result)

    @strawberry.type
    class Query:
        @strawberry.field
        def boom(self) -> str:
            raise RuntimeError("secret detail")

    schema = strawberry.Schema(Query, extensions=[Recording])
    result = schema.execute_sync("{ boom }")
    # the override got the operation's result, and the base class did nothing else to it
    assert len(seen) == 1
    assert [e.message for e in getattr(seen[0], "errors", [])] == ["secret detail"]
    assert result.errors is not None and result.errors[0].message == "secret detail"


def test_mask_errors_still_has_the_methods_the_override_relies_on() -> None:
    assert list(inspect.signature(MaskErrors._process_result).parameters) == ["self", "result"]
    assert list(inspect.signature(MaskErrors._process_errors).parameters) == ["self", "errors"]
    # and the app's extension is the one that masks: an internal error loses its message
    schema = strawberry.Schema(_Boom, extensions=[DomainErrorMasking])
    result = schema.execute_sync("{ boom }")
    assert result.errors is not None
    assert [e.message.startswith("Internal error.") for e in result.errors] == [True]
    assert "secret" not in str(result.errors)


@strawberry.type
class _Boom:
    @strawberry.field
    def boom(self) -> str:
        raise RuntimeError("secret detail")
