"""The reconciler's pass over reservations whose request is gone (placeOrder's safety net,
app/orders/placement.py): charged ones are confirmed, expired uncharged ones released."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlmodel import col

from app import metrics
from app.accounts.models import User
from app.db import Database, utcnow
from app.errors import DomainError
from app.orders.models import OrderReservation, ReservationStatus
from app.payments.provider import PaymentProvider
from app.settings import Settings
from app.unit_of_work import UnitsOfWork

if TYPE_CHECKING:
    from app.orders.placement import OrderPlacement

# After a failed look at the provider, the reconciler tries that reservation again after
# this long.
RECHECK_SECONDS = 30.0


class Reconciliation:
    def __init__(
        self,
        placement: OrderPlacement,
        db: Database,
        payments: PaymentProvider,
        units: UnitsOfWork,
        settings: Settings,
    ) -> None:
        self._placement = placement
        self._db = db
        self._payments = payments
        self._units = units
        self._settings = settings

    async def reconcile(self, older_than: timedelta, limit: int = 50, max_batches: int = 20) -> int:
        """Finish reservations whose request is gone (older than `older_than`): confirm the
        charged ones, release the expired uncharged ones; returns how many it finished.

        Each is looked at when it is due (`next_check_at`): an uncharged one that has not
        expired is looked at again at its expiry, one the provider could not answer for
        after RECHECK_SECONDS. A pass goes through everything due, batch after batch (each
        looked-at reservation is finished or rescheduled), so a backlog of unpaid
        reservations — a provider outage — never holds up a paid one behind it."""
        finished = 0
        for _ in range(max_batches):
            now = utcnow()
            async with self._db.read() as session:
                due = list(
                    (
                        await session.execute(
                            select(OrderReservation, col(User.email))
                            .join(User, col(User.id) == col(OrderReservation.user_id))
                            .where(
                                col(OrderReservation.status) == ReservationStatus.RESERVED.value,
                                col(OrderReservation.created_at) <= now - older_than,
                                col(OrderReservation.next_check_at) <= now,
                            )
                            .order_by(col(OrderReservation.next_check_at), col(OrderReservation.id))
                            .limit(limit)
                        )
                    ).all()
                )
            for reservation, email in due:
                if await self._reconcile_one(reservation, email, now):
                    finished += 1
            if len(due) < limit:
                break
        return finished

    async def _reconcile_one(
        self, reservation: OrderReservation, email: str, now: datetime
    ) -> bool:
        try:
            async with asyncio.timeout(self._settings.payment_timeout_seconds):
                charge = await self._payments.find_charge(reservation.payment_key)
        except (DomainError, TimeoutError, OSError):
            # The provider is not answering: look again a little later.
            await self._next_check(reservation, now + timedelta(seconds=RECHECK_SECONDS))
            return False
        if charge is not None:
            await self._placement.confirm(reservation, charge, email)
            metrics.reconciled("confirmed")
            return True
        if reservation.expires_at <= now:
            if await self._placement.release(reservation, if_expired=True):
                metrics.reconciled("released")
                return True
            return False
        await self._next_check(reservation, reservation.expires_at)
        return False

    async def _next_check(self, reservation: OrderReservation, when: datetime) -> None:
        async with self._units.begin() as uow:
            await uow.session.execute(
                update(OrderReservation)
                .where(
                    col(OrderReservation.id) == reservation.id,
                    col(OrderReservation.status) == ReservationStatus.RESERVED.value,
                    col(OrderReservation.next_check_at) == reservation.next_check_at,
                )
                .values(next_check_at=when)
            )
            await uow.commit()
