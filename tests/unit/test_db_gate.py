"""The pool's gate (app/db_gate.py): `size` places, waiters served in arrival order, each
waiting at most the timeout (one timer for all of them), and no place lost to a waiter
cancelled at any moment."""

from __future__ import annotations

import asyncio

import pytest

from app.db_gate import PoolGate


async def _waiter(gate: PoolGate, name: str, served: list[str]) -> None:
    await gate.acquire()
    served.append(name)


async def _full_with_two_waiting(
    timeout: float,
) -> tuple[PoolGate, list[str], asyncio.Task[None], asyncio.Task[None]]:
    """A gate of one place, taken, and waiters a then b queued behind it."""
    gate = PoolGate(1, timeout=timeout)
    await gate.acquire()
    served: list[str] = []
    a = asyncio.create_task(_waiter(gate, "a", served))
    await asyncio.sleep(0)
    b = asyncio.create_task(_waiter(gate, "b", served))
    await asyncio.sleep(0)
    return gate, served, a, b


def test_places_are_taken_then_handed_to_waiters_in_arrival_order() -> None:
    async def run() -> list[str]:
        gate = PoolGate(2, timeout=5.0)
        await gate.acquire()
        await gate.acquire()
        assert gate.locked()
        served: list[str] = []
        tasks = []
        for name in "abc":
            tasks.append(asyncio.create_task(_waiter(gate, name, served)))
            await asyncio.sleep(0)  # queued in this order
        await asyncio.sleep(0.01)
        assert served == []  # no place free: all wait
        for _ in range(3):
            gate.release()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return served

    assert asyncio.run(run()) == ["a", "b", "c"]


def test_a_place_given_back_with_no_one_waiting_is_free_again() -> None:
    async def run() -> None:
        gate = PoolGate(1, timeout=5.0)
        await gate.acquire()
        gate.release()
        assert not gate.locked()
        await asyncio.wait_for(gate.acquire(), 1.0)  # at once
        assert gate.locked()

    asyncio.run(run())


def test_each_waiter_gives_up_at_its_own_deadline() -> None:
    async def run() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        gate = PoolGate(1, timeout=0.2)
        await gate.acquire()

        async def timed() -> float:
            started = loop.time()
            with pytest.raises(TimeoutError):
                await gate.acquire()
            return loop.time() - started

        first = asyncio.create_task(timed())
        await asyncio.sleep(0.1)
        second = asyncio.create_task(timed())  # due 0.1 s after the first
        return await first, await second

    first, second = asyncio.run(run())
    assert 0.19 <= first < 2.0, first
    assert 0.19 <= second < 2.0, second  # not cut at the first one's deadline


def test_a_waiter_that_timed_out_takes_no_place() -> None:
    async def run() -> None:
        gate = PoolGate(1, timeout=0.05)
        await gate.acquire()
        with pytest.raises(TimeoutError):
            await gate.acquire()
        gate.release()
        await asyncio.wait_for(gate.acquire(), 1.0)  # the freed place, not the expired one's

    asyncio.run(run())


def test_a_cancelled_waiter_is_passed_over() -> None:
    async def run() -> list[str]:
        gate, served, a, b = await _full_with_two_waiting(5.0)
        a.cancel()
        await asyncio.sleep(0)
        gate.release()
        await asyncio.wait_for(b, 1.0)
        assert a.cancelled()
        return served

    assert asyncio.run(run()) == ["b"]


def test_a_waiter_cancelled_after_its_place_was_handed_over_passes_it_on() -> None:
    async def run() -> list[str]:
        gate, served, a, b = await _full_with_two_waiting(5.0)
        gate.release()  # a's now, but a has not run yet
        a.cancel()  # (the request's time cap, in the same loop turn)
        await asyncio.wait_for(b, 1.0)
        assert a.cancelled()
        return served

    assert asyncio.run(run()) == ["b"]


def test_waiters_behind_a_cancelled_one_still_time_out() -> None:
    async def run() -> None:
        _gate, served, a, b = await _full_with_two_waiting(0.1)
        a.cancel()  # gone before the timer (armed for a) fires
        await asyncio.wait([b], timeout=2.0)
        assert b.done(), "b was never timed out"
        assert isinstance(b.exception(), TimeoutError)
        assert served == []

    asyncio.run(run())
