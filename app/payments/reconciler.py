"""The reconciler: finishes what an interrupted request left between two transactions.

A placeOrder whose process died (or whose request was cut off) after reserving the stock
leaves a RESERVED reservation; a refund whose provider call failed, or whose process died
after deciding it, leaves a PENDING refund. Every instance that runs background work runs
this loop (they may overlap: every step is a compare-and-set, and every provider call
carries the same idempotency key as the original one):

- a reservation older than `reconcile_after_seconds` (no live request can still be working
  on it: that is longer than the request time cap) is confirmed if the provider says its
  key was charged — the order and its confirmation email appear once — and released (stock
  back) if it was not charged and has expired (`reservation_ttl_seconds`);
- a PENDING refund that is due is sent again, with backoff between attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from app import metrics
from app.orders.placement import OrderPlacement
from app.payments.refunds import Refunds

log = logging.getLogger("app.payments")


class Reconciler:
    def __init__(
        self, placement: OrderPlacement, refunds: Refunds, *, older_than_seconds: float
    ) -> None:
        self._placement = placement
        self._refunds = refunds
        self._older_than = timedelta(seconds=older_than_seconds)

    async def run_once(self) -> int:
        """One pass; returns how many reservations and refunds it finished."""
        finished = await self._placement.reconcile(self._older_than)
        sent = await self._refunds.resend_due(self._older_than)
        for _ in range(sent):
            metrics.reconciled("refunded")
        return finished + sent

    async def run_forever(self, interval: float, stop: asyncio.Event) -> None:
        """Passes until `stop` is set. A failing pass (database down...) is logged and the
        loop carries on: what it had to do is still in the database for the next one."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                log.error("reconciler pass failed: %s", type(exc).__name__, exc_info=exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
