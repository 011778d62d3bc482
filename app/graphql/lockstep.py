"""Running async resolvers in lockstep, without a task per field (app/graphql/compiled.py):
every coroutine of a round is stepped until it waits, then one driver awaits everything the
round waits for, so each DataLoader gets the whole round's keys in one batch.

The first step is taken where a coroutine is made (`step`): one that finishes there (an
async resolver answering from rows fetched with its page) is a plain value at once, and
only those that wait are handed to `fill` with what they wait for."""

from __future__ import annotations

import asyncio
import types
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


class Waiting:
    """A coroutine that took its first step and waits: `step` hands it back like this."""

    __slots__ = ("coroutine", "waits_for")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waits_for: Any) -> None:
        self.coroutine = coroutine
        self.waits_for = waits_for


def step(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Takes a coroutine's first step: its value if it finished (raising what it raised),
    or a `Waiting` for `fill`."""
    try:
        waits_for = coroutine.send(None)
    except StopIteration as done:
        return done.value
    return Waiting(coroutine, waits_for)


@types.coroutine
def resumed(coroutine: Coroutine[Any, Any, Any], waits_for: Any) -> Generator[Any, Any, Any]:
    """Awaits a coroutine that took its first step and yielded `waits_for`: hands that up
    first, then goes on with the coroutine as `await` would. What is thrown in (the
    request time cap's cancellation) goes into the coroutine — so a DataLoader's statement
    is still interrupted — and so does a close."""
    while True:
        try:
            yield waits_for
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as thrown:
            try:
                waits_for = coroutine.throw(thrown)
            except StopIteration as done:
                return done.value
            continue  # it handled what was thrown, and waits again
        return (yield from coroutine.__await__())


def _collect(waits_for: Any, futures: list[asyncio.Future[Any]]) -> None:
    if type(waits_for) is Wait:
        futures.extend(waits_for.futures)
    elif waits_for is not None:  # a future (a bare yield is None: go round again)
        waits_for._asyncio_future_blocking = False
        futures.append(waits_for)


async def lockstep(waiting: list[Waiting], fail: Fail) -> list[Any]:
    """Runs coroutines that took their first step (`step`) a step each in turn until every
    one waits, then hands everything they wait for up as one `Wait`, and so on until all
    are done. A coroutine that raises gets `fail(index, error)` as its result (which
    records the error, or raises it on to null the parent: then the others are closed).
    Only ever awaited below `drive` (which does the waiting) or another `lockstep`."""
    coroutines = [w.coroutine for w in waiting]
    results: list[Any] = [None] * len(coroutines)
    running = list(range(len(coroutines)))
    try:
        futures: list[asyncio.Future[Any]] = []
        for w in waiting:
            _collect(w.waits_for, futures)
        while running:
            await Wait(futures)
            futures = []
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
                _collect(waits_for, futures)
            running = still
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
            if not futures:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait(futures)
            except asyncio.CancelledError:
                # The request time cap. graphql-core's tasks cancel what their resolvers
                # wait for; so does this: a DataLoader whose every caller is cancelled
                # cancels its batch, and with it the statement on the server.
                for future in futures:
                    future.cancel()
                raise
    except BaseException:
        close_unstarted([coroutine])
        raise


async def fill(out: Any, slots: list[Any], waiting: list[Waiting], fail: Fail) -> Any:
    """Puts each awaited value into `out[slot]` (an object's keys, a list's indices); each
    is its own error boundary: `fail(index, error)` records the error or raises it on."""
    for slot, value in zip(slots, await lockstep(waiting, fail), strict=True):
        out[slot] = value
    return out


def close_unstarted(pending: list[Any]) -> None:
    """Closes coroutines that will not be run on (a sibling nulled their parent). One not
    started yet may hold others as its arguments (`fill`'s `Waiting`s): closing it runs
    none of its code, so those are closed here too. Anything else is left alone."""
    for coroutine in pending:
        if not iscoroutine(coroutine):
            continue
        if getcoroutinestate(coroutine) == CORO_CREATED:
            held: list[Any] = []
            for value in cast(Any, coroutine).cr_frame.f_locals.values():
                held.extend(value if isinstance(value, list) else [value])
            close_unstarted(
                [value.coroutine if isinstance(value, Waiting) else value for value in held]
            )
        coroutine.close()
