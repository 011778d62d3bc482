"""`Limiter.settle`: several budgets in one atomic step (one Redis round trip) must give
exactly what the same budgets give one `limits` operation at a time — the same refusals,
the same counters afterwards — in process and in Redis. The oracle is the `limits`
library's own fixed-window strategy on a second limiter; sharing counters with it also
pins the key format the Lua script writes (the one `limits`' RedisStorage uses)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator

import pytest

from app.errors import RateLimited
from app.redis_link import RedisLink
from app.security.counters import COUNT, HIT, UNLOCKED, WITHIN
from app.security.ratelimit import Bucket, Limiter
from app.settings import RateLimits

TIGHT = RateLimits(
    lookups_per_user="4/minute",
    lookups_per_ip="6/minute",
    failed_lookups_per_user="3/minute",
    failed_lookups_per_ip="5/minute",
)


async def one_at_a_time(limiter: Limiter, steps: list[tuple[str, Bucket, str]]) -> int:
    """The oracle: the steps as single `limits` operations, stopping at the first refusal
    (its 1-based index), 0 when all pass."""
    single = {
        UNLOCKED: limiter.ensure_not_exhausted,
        WITHIN: limiter.ensure_within,
        HIT: limiter.hit,
        COUNT: limiter.record,
    }
    for index, (op, bucket, key) in enumerate(steps, start=1):
        try:
            await single[op](bucket, key)
        except RateLimited:
            return index
    return 0


@pytest.fixture(params=["in-process", "redis"])
async def limiters(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Limiter, Limiter]]:
    if request.param == "in-process":
        yield Limiter(TIGHT), Limiter(TIGHT)
        return
    url = request.getfixturevalue("redis_url")
    links = RedisLink(url), RedisLink(url)
    try:
        yield Limiter(TIGHT, links[0]), Limiter(TIGHT, links[1])
    finally:
        for link in links:
            await link.aclose()


async def test_settle_matches_single_operations(limiters: tuple[Limiter, Limiter]) -> None:
    settled, oracle = limiters
    rng = random.Random(20261130)
    run = uuid.uuid4().hex  # Redis keeps counters across runs: keys of this run only
    buckets = [
        settled.lookups_per_user,
        settled.lookups_per_ip,
        settled.failures_per_user,
        settled.failures_per_ip,
    ]
    ops = [UNLOCKED, WITHIN, HIT, COUNT]
    refusals = 0
    for _ in range(200):
        plan = [
            (rng.choice(ops), rng.choice(buckets), f"k{rng.randrange(3)}")
            for _ in range(rng.randint(1, 4))
        ]
        mine = [(op, bucket, f"settle:{run}:{key}") for op, bucket, key in plan]
        theirs = [(op, bucket, f"oracle:{run}:{key}") for op, bucket, key in plan]
        expected = await one_at_a_time(oracle, theirs)
        got = await settle_index(settled, mine)
        assert got == expected, (plan, got, expected)
        refusals += expected > 0
        for bucket in buckets:
            for key in ("k0", "k1", "k2"):
                assert await count_of(settled, bucket, f"settle:{run}:{key}") == (
                    await count_of(oracle, bucket, f"oracle:{run}:{key}")
                ), (bucket.name, key)
    assert 20 < refusals < 190  # the random plans reached the limits and passed them


async def settle_index(limiter: Limiter, steps: list[tuple[str, Bucket, str]]) -> int:
    """Which step refused, read from the counters: a refusal of a counting step leaves its
    count over the amount; of a checking step, at (UNLOCKED) or over (WITHIN) it."""
    before = [await count_of(limiter, bucket, key) for _, bucket, key in steps]
    try:
        await limiter.settle(*steps)
    except RateLimited as refused:
        assert refused.retry_after is not None and 1 <= refused.retry_after <= 60
        return first_refusing(steps, before)
    return 0


async def count_of(limiter: Limiter, bucket: Bucket, key: str) -> int:
    """The raw counter, through the `limits` storage (not clipped like `remaining`)."""
    return int(await limiter.storage.get(bucket.item.key_for(bucket.name, key)))


def first_refusing(steps: list[tuple[str, Bucket, str]], before: list[int]) -> int:
    """The index the one-at-a-time rules would refuse at, given each step's counter before
    the plan ran (steps on the same counter see the plan's own increments)."""
    spent: dict[tuple[str, str], int] = {}
    for index, ((op, bucket, key), counted) in enumerate(zip(steps, before, strict=True), 1):
        already = spent.get((bucket.name, key), 0)
        count = counted + already
        if op in (HIT, COUNT):
            count += 1
            spent[(bucket.name, key)] = already + 1
        over = {UNLOCKED: count >= bucket.item.amount, WITHIN: count > bucket.item.amount}
        if (op == HIT and count > bucket.item.amount) or over.get(op, False):
            return index
    raise AssertionError("settle refused where no step would")


async def test_a_refusal_names_its_budget_and_stops_the_plan() -> None:
    limiter = Limiter(TIGHT)
    user, ip = "user:a", "10.0.0.9"
    for _ in range(4):
        await limiter.charge_lookup(user, ip)
    with pytest.raises(RateLimited) as refused:
        await limiter.charge_lookup(user, ip)
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 60
    # the refused lookup was not counted against the address (the plan stopped at HIT)
    assert await limiter.remaining(limiter.lookups_per_ip, ip) == 6 - 4


@pytest.mark.parametrize("key", ["u-123", "203.0.113.9", "2001:db8::1", "a/b", "ключ", ""])
def test_a_buckets_own_key_is_the_one_limits_makes(key: str) -> None:
    limiter = Limiter(TIGHT)
    buckets = [value for value in vars(limiter).values() if isinstance(value, Bucket)]
    assert len(buckets) >= 8
    for bucket in buckets:
        assert bucket.key_for(key) == bucket.item.key_for(bucket.name, key)
        assert bucket.window == bucket.item.get_expiry()
