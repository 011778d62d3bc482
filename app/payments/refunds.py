"""Refunds: decided in the shop's transaction, sent to the provider after it, completed in a
second one.

No transaction stays open across a call to the provider. A use case that refunds (a
cancellation, a received return) writes a PENDING `PaymentRefund` with its decision
(`Refunds.add`, inside its own transaction) and commits; `Refunds.send` then calls the
provider with the refund's idempotency key, outside any transaction, and completes it in a
short one: the row becomes DONE, the order's `refunded_minor` grows, and the handler
registered for the refund's reason does the rest of the use case's second half (a return
becomes REFUNDED and its email is queued). If the provider fails or the process dies in
between, the refund stays PENDING: the next request for it, or the reconciler, sends it
again with the same key, and the provider moves the money once.

A PENDING refund counts against what may still be refunded from the moment it is written
(`committed_minor`), so refunds in flight can never together exceed what was paid.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db import Database, utcnow
from app.errors import DomainError, ServiceUnavailable
from app.events.broker import Broker, order_topic
from app.orders.models import Order
from app.payments.models import PaymentRefund, RefundStatus
from app.payments.provider import PaymentProvider, Refund
from app.tables import rows_changed

log = logging.getLogger("app.payments")

# The second half of a use case, run inside the completing transaction; returns the kind
# of live update to publish after the commit (or None).
RefundHandler = Callable[[AsyncSession, PaymentRefund, Refund], Awaitable[str | None]]

RETRY_BASE_SECONDS = 10
RETRY_CAP_SECONDS = 3600


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed attempt: 10 s, 20 s, 40 s ... at most an hour."""
    return timedelta(seconds=min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** min(attempts, 20)))


class Refunds:
    def __init__(
        self, db: Database, payments: PaymentProvider, events: Broker, *, timeout_seconds: float
    ) -> None:
        self._db = db
        self._payments = payments
        self._events = events
        self._timeout = timeout_seconds
        self._handlers: dict[str, RefundHandler] = {}

    def on_done(self, reason: str, handler: RefundHandler) -> None:
        """Run `handler` in the transaction that completes a refund of `reason`."""
        self._handlers[reason] = handler

    # -- inside the deciding transaction --------------------------------------------------
    @staticmethod
    async def committed_minor(session: AsyncSession, order: Order) -> int:
        """What is refunded or on its way: the order's `refunded_minor` (refunds done,
        including those made before refunds were recorded here) and its PENDING refunds."""
        pending = (
            await session.execute(
                select(func.coalesce(func.sum(col(PaymentRefund.amount_minor)), 0)).where(
                    col(PaymentRefund.order_id) == order.id,
                    col(PaymentRefund.status) == RefundStatus.PENDING.value,
                )
            )
        ).scalar_one()
        return order.refunded_minor + int(pending)

    @staticmethod
    async def by_key(session: AsyncSession, key: str) -> PaymentRefund | None:
        found: PaymentRefund | None = (
            await session.execute(
                select(PaymentRefund).where(col(PaymentRefund.idempotency_key) == key)
            )
        ).scalar_one_or_none()
        return found

    @staticmethod
    def add(
        session: AsyncSession,
        *,
        order: Order,
        reason: str,
        key: str,
        amount_minor: int,
        return_id: int | None = None,
        requested_by: int | None = None,
        automatic: bool = False,
    ) -> PaymentRefund:
        """Write the decision (PENDING) in the caller's transaction; `send` it after the
        commit. `key` is the provider's idempotency key: one per refund, ever."""
        assert order.id is not None
        refund = PaymentRefund(
            order_id=order.id,
            return_id=return_id,
            reason=reason,
            idempotency_key=key,
            amount_minor=amount_minor,
            currency=order.currency,
            charge_reference=order.payment_reference,
            requested_by=requested_by,
            automatic=automatic,
        )
        session.add(refund)
        return refund

    # -- after the commit -----------------------------------------------------------------
    async def send(self, refund: PaymentRefund) -> Refund:
        """Ask the provider for the money back (no transaction open), then complete the
        refund. ServiceUnavailable when the provider failed: the refund stays PENDING, to
        be sent again (same key) by a retry or the reconciler."""
        await self._db.release_connection()  # no connection held while the provider works
        try:
            async with asyncio.timeout(self._timeout):
                made = await self._payments.refund(
                    refund.charge_reference,
                    refund.amount_minor,
                    refund.currency,
                    idempotency_key=refund.idempotency_key,
                )
        except (DomainError, TimeoutError, OSError) as exc:
            if isinstance(exc, DomainError) and exc.code.value != "SERVICE_UNAVAILABLE":
                raise
            await self._note_failure(refund, exc)
            raise ServiceUnavailable(
                "The payment provider did not confirm the refund; it will be retried."
            ) from exc
        await self._complete(refund, made)
        return made

    async def _complete(self, refund: PaymentRefund, made: Refund) -> None:
        kind: str | None = None
        now = utcnow()
        async with self._db.write() as session:
            done = await session.execute(
                update(PaymentRefund)
                .where(
                    col(PaymentRefund.id) == refund.id,
                    col(PaymentRefund.status) == RefundStatus.PENDING.value,
                )
                .values(
                    status=RefundStatus.DONE.value,
                    provider_reference=made.reference,
                    completed_at=now,
                )
            )
            if rows_changed(done) == 1:
                await session.execute(
                    update(Order)
                    .where(col(Order.id) == refund.order_id)
                    .values(
                        refunded_minor=col(Order.refunded_minor) + refund.amount_minor,
                        updated_at=now,
                    )
                )
                handler = self._handlers.get(refund.reason)
                if handler is not None:
                    kind = await handler(session, refund, made)
            await session.commit()
        refund.status = RefundStatus.DONE.value
        refund.provider_reference = made.reference
        refund.completed_at = now
        if kind is not None:
            self._events.publish(order_topic(refund.order_id), {"type": kind})

    async def _note_failure(self, refund: PaymentRefund, exc: BaseException) -> None:
        attempts = refund.attempts + 1
        log.warning("refund not confirmed by the provider: %s", type(exc).__name__)
        try:
            async with self._db.write() as session:
                await session.execute(
                    update(PaymentRefund)
                    .where(col(PaymentRefund.id) == refund.id)
                    .values(
                        attempts=attempts,
                        last_error=type(exc).__name__,
                        next_attempt_at=utcnow() + retry_delay(attempts),
                    )
                )
                await session.commit()
        except ServiceUnavailable:
            return  # the database is down too; the reconciler finds the row as it was
        refund.attempts = attempts

    # -- the reconciler -------------------------------------------------------------------
    async def resend_due(self, older_than: timedelta, limit: int = 20) -> int:
        """Send the PENDING refunds that are due and older than `older_than` (a live
        request may still be sending younger ones). Each is claimed first by moving its
        next attempt on, so that two instances do not send the same refund at once (the
        provider's idempotency would absorb it; this avoids the call)."""
        now = utcnow()
        async with self._db.read() as session:
            due = list(
                (
                    await session.execute(
                        select(PaymentRefund)
                        .where(
                            col(PaymentRefund.status) == RefundStatus.PENDING.value,
                            col(PaymentRefund.next_attempt_at) <= now,
                            col(PaymentRefund.created_at) <= now - older_than,
                        )
                        .order_by(col(PaymentRefund.id))
                        .limit(limit)
                    )
                ).scalars()
            )
        sent = 0
        for refund in due:
            if not await self._claim(refund, now):
                continue
            try:
                await self.send(refund)
            except ServiceUnavailable:
                continue
            sent += 1
        return sent

    async def _claim(self, refund: PaymentRefund, now: object) -> bool:
        async with self._db.write() as session:
            claimed = await session.execute(
                update(PaymentRefund)
                .where(
                    col(PaymentRefund.id) == refund.id,
                    col(PaymentRefund.status) == RefundStatus.PENDING.value,
                    col(PaymentRefund.next_attempt_at) == refund.next_attempt_at,
                )
                .values(next_attempt_at=utcnow() + timedelta(seconds=RETRY_BASE_SECONDS))
            )
            await session.commit()
        return rows_changed(claimed) == 1
