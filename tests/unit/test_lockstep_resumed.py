"""`resumed` (app/graphql/lockstep.py) goes on with a coroutine whose first step a
compiled plan took where it made it: what the coroutine waits for is handed up first, then
it runs on as under `await`; a cancellation thrown in and a close reach the coroutine (a
DataLoader's statement is interrupted by them)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from inspect import CORO_CLOSED, getcoroutinestate
from typing import Any

import pytest

from app.graphql.lockstep import Waiting, resumed, step


def _started(coroutine: Coroutine[Any, Any, Any]) -> Waiting:
    waiting = step(coroutine)
    assert isinstance(waiting, Waiting)
    return waiting


async def test_it_hands_up_the_first_wait_then_runs_on_to_the_answer() -> None:
    first, second = asyncio.Future[int](), asyncio.Future[int]()
    seen: list[int] = []

    async def resolver() -> int:
        seen.append(await first)
        seen.append(await second)
        return sum(seen)

    waiting = _started(resolver())
    assert waiting.waits_for is first
    task = asyncio.ensure_future(resumed(waiting.coroutine, waiting.waits_for))
    await asyncio.sleep(0)
    first.set_result(2)
    await asyncio.sleep(0)
    assert seen == [2] and not task.done()
    second.set_result(3)
    assert await task == 5


async def test_a_cancellation_reaches_the_coroutine_and_ends_it() -> None:
    wait = asyncio.Future[int]()
    cleaned: list[str] = []

    async def resolver() -> int:
        try:
            return await wait
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise

    waiting = _started(resolver())
    task = asyncio.ensure_future(resumed(waiting.coroutine, waiting.waits_for))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cancelled"]
    assert wait.cancelled()  # asyncio cancels what was awaited, as with a plain await


async def test_a_coroutine_that_handles_what_is_thrown_in_waits_again_and_answers() -> None:
    first, second = asyncio.Future[int](), asyncio.Future[int]()

    async def resolver() -> str:
        try:
            await first
        except asyncio.CancelledError:
            return f"recovered {await second}"
        return "not cancelled"

    waiting = _started(resolver())
    task = asyncio.ensure_future(resumed(waiting.coroutine, waiting.waits_for))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()
    second.set_result(7)
    assert await task == "recovered 7"


async def test_closing_it_closes_the_coroutine() -> None:
    closed: list[bool] = []

    async def resolver() -> None:
        try:
            await asyncio.Future()
        finally:
            closed.append(True)

    waiting = _started(resolver())
    outer = resumed(waiting.coroutine, waiting.waits_for)
    assert next(outer) is waiting.waits_for
    outer.close()
    assert closed == [True]
    assert getcoroutinestate(waiting.coroutine) == CORO_CLOSED
