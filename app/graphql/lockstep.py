"""Running async resolvers in lockstep, without a task per field (app/graphql/compiled.py):
every coroutine of a round is stepped until it waits, then one driver awaits everything the
round waits for, so each DataLoader gets the whole round's keys in one batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from inspect import CORO_CREATED, getcoroutinestate, iscoroutine
from typing import Any, cast

# Called with (index, error) when the coroutine at `index` raises: records the error (the
# result stays None) or raises it on (to null the parent).
Fail = Callable[[int, Exception], None]


class Wait:
    """What a `lockstep` hands up to its driver: the futures its coroutines wait for."""

    __slots__ = ("futures",)

    def __init__(self, futures: list[asyncio.Future[Any]]) -> None:
        self.futures = futures

    def __await__(self) -> Generator[Any, None, None]:
        yield self


async def lockstep(coroutines: list[Coroutine[Any, Any, Any]], fail: Fail) -> list[Any]:
    """Runs `coroutines` a step each in turn until every one waits, then hands everything
    they wait for up as one `Wait`, and so on until all are done. A coroutine that raises
    gets `fail(index, error)` as its result (which records the error, or raises it on to
    null the parent: then the others are closed). Only ever awaited below `drive` (which
    does the waiting) or another `lockstep`."""
    results: list[Any] = [None] * len(coroutines)
    running = list(range(len(coroutines)))
    try:
        while running:
            futures: list[asyncio.Future[Any]] = []
            still: list[int] = []
            for index in running:
                try:
                    waits_for = coroutines[index].send(None)
                except StopIteration as done:
                    results[index] = done.value
                    continue
                except Exception as raw:
                    fail(index, raw)  # recorded (the result stays None), or raised on
                    continue
                still.append(index)
                if type(waits_for) is Wait:
                    futures.extend(waits_for.futures)
                elif waits_for is not None:  # a future (a bare yield is None: go round again)
                    waits_for._asyncio_future_blocking = False
                    futures.append(waits_for)
            running = still
            if running:
                await Wait(futures)
    except BaseException:
        close_unstarted([coroutines[index] for index in running])
        raise
    return results


async def drive(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Awaits a coroutine that may await `lockstep`s: does the waiting they hand up."""
    try:
        while True:
            try:
                waits_for = coroutine.send(None)
            except StopIteration as done:
                return done.value
            if type(waits_for) is Wait:
                futures: list[asyncio.Future[Any]] = waits_for.futures
            elif waits_for is None:
                futures = []
            else:
                waits_for._asyncio_future_blocking = False
                futures = [waits_for]
            if futures:
                await asyncio.wait(futures)
            else:
                await asyncio.sleep(0)
    except BaseException:
        close_unstarted([coroutine])
        raise


async def fill(
    out: Any, slots: list[Any], pending: list[Coroutine[Any, Any, Any]], fail: Fail
) -> Any:
    """Puts each awaited value into `out[slot]` (an object's keys, a list's indices); each
    is its own error boundary: `fail(index, error)` records the error or raises it on."""
    if len(pending) == 1:
        try:
            out[slots[0]] = await pending[0]
        except Exception as raw:
            fail(0, raw)
            out[slots[0]] = None
        return out
    for slot, value in zip(slots, await lockstep(pending, fail), strict=True):
        out[slot] = value
    return out


def close_unstarted(pending: list[Coroutine[Any, Any, Any]]) -> None:
    """Closes coroutines that will not be run (a sibling nulled their parent). One not
    started yet may hold others as its arguments (`fill`'s list): closing it runs
    none of its code, so those are closed here too."""
    for coroutine in pending:
        if getcoroutinestate(coroutine) == CORO_CREATED:
            held: list[Any] = []
            for value in cast(Any, coroutine).cr_frame.f_locals.values():
                held.extend(value if isinstance(value, list) else [value])
            close_unstarted([value for value in held if iscoroutine(value)])
        coroutine.close()
