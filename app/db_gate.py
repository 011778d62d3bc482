"""The pool's gate: at most `size` connections out at once, and a request that waits for one
waits at most `timeout` seconds (then `TimeoutError`).

`asyncio.Semaphore` under `asyncio.timeout` does the same with a timer per waiter: under
load (more requests than connections, as in scripts/bench) every request waits at the gate,
and its timer's set-up and cancel (a `Timeout`, the task lookup, a loop timer) cost about
as much as the wait itself. Here waiters queue in arrival order with their deadlines, and
one loop timer, armed for the oldest, serves them all: since every waiter waits the same
`timeout`, the oldest is always the first due.
"""

from __future__ import annotations

import asyncio
from collections import deque


class PoolGate:
    __slots__ = ("_free", "_timeout", "_timer", "_waiters")

    def __init__(self, size: int, timeout: float) -> None:
        self._free = size
        self._timeout = timeout
        # (deadline, future) in arrival order; a future done early (its waiter cancelled)
        # stays until it reaches the head. Invariant: `_free > 0` only with no waiter.
        self._waiters: deque[tuple[float, asyncio.Future[None]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def locked(self) -> bool:
        """Every place is taken: `acquire` would wait."""
        return self._free == 0

    async def acquire(self) -> None:
        if self._free > 0:
            self._free -= 1
            return
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()
        due = loop.time() + self._timeout
        self._waiters.append((due, granted))
        if self._timer is None:
            self._timer = loop.call_at(due, self._expire, loop)
        try:
            await granted
        except BaseException:
            # Cancelled (the request's time cap) after its place was handed over, but
            # before it ran: pass the place on, or it would be lost.
            if granted.done() and not granted.cancelled() and granted.exception() is None:
                self.release()
            raise

    def release(self) -> None:
        """Give a place back: to the oldest live waiter, or to the free count."""
        waiters = self._waiters
        while waiters:
            _, granted = waiters.popleft()
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The oldest waiter's deadline: fail every waiter whose time is up, and arm the
        timer for the next one's."""
        self._timer = None
        now = loop.time()
        waiters = self._waiters
        while waiters:
            due, granted = waiters[0]
            if granted.done():
                waiters.popleft()
            elif due <= now:
                waiters.popleft()
                granted.set_exception(TimeoutError())
            else:
                self._timer = loop.call_at(due, self._expire, loop)
                return
