"""Between requests a clean connection waits on the Database's own stack instead of going
back through SQLAlchemy's pool (app/db.py `_warm`): the next request takes it without a
checkout. Only a connection out of any transaction is kept; the pool's limits (its size,
POOL_TIMEOUT_SECONDS of waiting) still hold; a connection whose server went away takes
the warm ones with it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, text

import app.db as db_module
from app.db import Database, _lease
from app.engines import driver_in_transaction
from app.errors import ServiceUnavailable
from app.models import User
from app.tables import table

# Built once, as every statement of `fetch_all` is (its caches keep what they are given).
_NOBODY = select(table(User).c.id).where(table(User).c.id == -1)
_PROBE_COUNT = select(text("count(*)")).select_from(text("warm_probe"))


async def _driver_in_scope(db: Database) -> Any:
    """The driver connection the current scope's first statement ran on."""
    await db.fetch_all(_NOBODY, {})
    lease = _lease.get()
    assert lease is not None and lease.driver is not None
    return lease.driver


def test_the_next_request_takes_the_connection_the_last_one_gave_back(
    database_url: str,
) -> None:
    async def scenario() -> tuple[Any, Any, int]:
        db = Database(database_url, pool_size=3)
        try:
            async with db.scope():
                first = await _driver_in_scope(db)
            async with db.scope():
                second = await _driver_in_scope(db)
            checked_out = db.engine.pool.checkedout()  # type: ignore[attr-defined]
            return first, second, checked_out
        finally:
            await db.dispose()

    first, second, checked_out = asyncio.run(scenario())
    assert second is first
    # kept checked out of SQLAlchemy's pool, on the stack: one connection for both
    assert checked_out == 1


def test_a_connection_left_in_a_transaction_is_rolled_back_and_not_kept(
    database_url: str,
) -> None:
    async def scenario() -> tuple[bool, int, bool]:
        db = Database(database_url, pool_size=1)
        try:
            async with db.scope():
                driver = await _driver_in_scope(db)
                await driver.execute("CREATE TABLE warm_probe (n INTEGER)")
            async with db.scope():
                driver = await _driver_in_scope(db)
                # behind SQLAlchemy's back, as an interrupted write can leave it
                await driver.execute("BEGIN")
                await driver.execute("INSERT INTO warm_probe (n) VALUES (1)")
                left_open = driver_in_transaction(driver)
            async with db.scope():
                again = await _driver_in_scope(db)
                rows = await db.fetch_all(_PROBE_COUNT, {})
                still_open = driver_in_transaction(again)
                await again.execute("DROP TABLE warm_probe")
            return left_open, rows[0][0], still_open
        finally:
            await db.dispose()

    left_open, count, still_open = asyncio.run(scenario())
    assert left_open
    assert count == 0  # the insert was rolled back on its way back to the pool
    assert not still_open


def test_no_more_requests_hold_a_connection_than_the_pool_has(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "POOL_TIMEOUT_SECONDS", 0.3)

    async def scenario() -> tuple[list[str], bool]:
        db = Database(database_url, pool_size=1)
        order: list[str] = []
        held = asyncio.Event()
        release = asyncio.Event()

        async def holder() -> None:
            async with db.scope():
                await _driver_in_scope(db)
                order.append("first in")
                held.set()
                await release.wait()
                order.append("first out")

        async def second() -> None:
            await held.wait()
            async with db.scope():
                await _driver_in_scope(db)
                order.append("second in")

        try:
            first_task = asyncio.create_task(holder())
            await held.wait()
            # the one connection is held: a third request waits its 0.3 s, then gives up
            timed_out = False
            try:
                async with db.scope():
                    await _driver_in_scope(db)
            except ServiceUnavailable:
                timed_out = True
            second_task = asyncio.create_task(second())
            await asyncio.sleep(0.05)
            release.set()
            await asyncio.gather(first_task, second_task)
            return order, timed_out
        finally:
            await db.dispose()

    order, timed_out = asyncio.run(scenario())
    assert timed_out
    assert order == ["first in", "first out", "second in"]


def test_a_lost_connection_takes_the_warm_ones_with_it(database_url: str) -> None:
    async def scenario() -> tuple[int, int]:
        db = Database(database_url, pool_size=3)
        try:
            async with db.scope(), db.scope():  # nested: one lease
                await _driver_in_scope(db)

            async def one() -> None:
                async with db.scope():
                    await _driver_in_scope(db)
                    await asyncio.sleep(0.01)

            await asyncio.gather(one(), one(), one())
            warm_before = len(db._warm or [])
            async with db.scope():
                await _driver_in_scope(db)
                lease = _lease.get()
                assert lease is not None
                await db._discard(lease)
            return warm_before, len(db._warm or [])
        finally:
            await db.dispose()

    warm_before, warm_after = asyncio.run(scenario())
    assert warm_before == 3
    assert warm_after == 0


def test_tasks_of_one_request_take_turns_on_its_connection(database_url: str) -> None:
    """Resolvers of one request may read at once (graphql-core runs sibling fields as
    tasks): they share its one connection, one statement at a time — asyncpg refuses a
    second operation on a busy connection, so on PostgreSQL a statement that did not wait
    its turn would fail here — and a read inside the same task's transaction joins it."""

    async def scenario() -> tuple[list[list[tuple[Any, ...]]], int, list[tuple[Any, ...]]]:
        db = Database(database_url, pool_size=2)
        try:
            async with db.scope():
                slow = select(text("1")).select_from(text("(SELECT 1) AS one"))
                results = await asyncio.gather(
                    *(db.fetch_all(slow if i % 2 else _NOBODY, {}) for i in range(8))
                )
                checked_out = db.engine.pool.checkedout()  # type: ignore[attr-defined]
                async with db.write():
                    joined = await db.fetch_all(slow, {})
            return results, checked_out, joined
        finally:
            await db.dispose()

    results, checked_out, joined = asyncio.run(scenario())
    assert results == [[] if i % 2 == 0 else [(1,)] for i in range(8)]
    assert checked_out == 1  # the request's one connection
    assert joined == [(1,)]
