"""placeOrder without a lock held across the card charge: reserve, charge, confirm.

1. **Reserve** (one short transaction): prices checked, stock taken with conditional
   decrements (never below zero), the order code fixed, and an `OrderReservation` written
   under the customer's idempotency key. Commit: the product rows are free again.
2. **Charge** (no transaction open): the payment provider is called with the
   reservation's `payment_key`, so repeating the call (a retry, a double submit, the
   reconciler) moves money once.
3. **Confirm** (a second short transaction): compare-and-set RESERVED → CONFIRMED, then the
   order, its lines and the confirmation email (outbox), exactly once whoever gets there.

A declined card or a provider that says it is down releases the reservation (stock back)
at once. A provider that does not answer in time, a request ended by the time cap, or a
process that dies between the steps leaves the reservation RESERVED: the customer's retry
(same idempotency key) resumes it, and the reconciler (app/payments/reconciler.py) asks
the provider about `payment_key` — charged: confirm and send the email; not charged: release
once the reservation has expired. Customers never see a reservation: order(code), myOrders
and every staff view read orders only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from app.db import Database, utcnow
from app.errors import BadUserInput, DomainError, ServiceUnavailable
from app.orders.inputs import AddressInput, LineInput
from app.orders.models import (
    Checkout,
    CheckoutStatus,
    Order,
    OrderLine,
    OrderReservation,
    OrderStatus,
    ReservationStatus,
)
from app.orders.reconciliation import RECHECK_SECONDS, Reconciliation
from app.orders.reservations import Request, Reservations, release_in
from app.orders.service import OrderService, OrderView
from app.payments.provider import Charge, PaymentProvider
from app.security import codes
from app.security.policy import Viewer
from app.settings import Settings
from app.tables import rows_changed
from app.unit_of_work import UnitsOfWork

log = logging.getLogger("app.orders")

__all__ = ["RECHECK_SECONDS", "OrderPlacement", "PaymentNotConfirmed", "Request"]


class PaymentNotConfirmed(ServiceUnavailable):
    default_message = (
        "The payment provider did not answer in time. Nothing is lost: retry with the same "
        "idempotency key (you are charged at most once), or wait for the confirmation email."
    )


class OrderPlacement:
    def __init__(
        self, db: Database, payments: PaymentProvider, orders: OrderService, settings: Settings
    ) -> None:
        self._db = db
        self._payments = payments
        self._orders = orders
        self._settings = settings
        self._units = UnitsOfWork(db, orders.events)
        self._reservations = Reservations(
            orders,
            ttl=timedelta(seconds=settings.reservation_ttl_seconds),
            older_than=timedelta(seconds=settings.reconcile_after_seconds),
        )
        self._reconciliation = Reconciliation(self, db, payments, self._units, settings)

    async def place(
        self,
        who: Viewer,
        lines: list[LineInput],
        address: AddressInput,
        payment_token: str,
        key: str,
        print_: str,
        *,
        code: str | None = None,
        expected_prices: dict[str, int] | None = None,
        checkout_id: int | None = None,
    ) -> OrderView:
        """The order for this idempotency key: the one placed before, or a new one."""
        request = Request(who, lines, address, key, print_, code, expected_prices, checkout_id)
        existing = await self._orders.by_idempotency_key(who.user_id, key, print_)
        if existing is not None:
            return existing
        reservation, fresh = await self._reserve(request)
        if reservation.status == ReservationStatus.CONFIRMED.value:
            return await self._order_for(request)
        charge = await self._charge(reservation, payment_token, fresh=fresh)
        return await self.confirm(reservation, charge, who.email)

    # -- 1. reserve -------------------------------------------------------------------------
    async def _reserve(self, request: Request) -> tuple[OrderReservation, bool]:
        """The reservation to charge for, and whether this request made it (a new attempt)
        rather than resumed one that an earlier request may have charged already."""
        try:
            async with self._units.begin() as uow:
                found = await self._reservations.reserve_in(uow.session, request)
                await uow.commit()
                return found
        except IntegrityError:
            # A concurrent request with the same key reserved first: carry on with its
            # reservation (the provider's idempotency makes both charges one).
            async with self._units.begin() as uow:
                found = await self._reservations.reserve_in(uow.session, request)
                await uow.commit()
                return found

    # -- 2. charge ----------------------------------------------------------------------------
    async def _charge(
        self, reservation: OrderReservation, payment_token: str, *, fresh: bool
    ) -> Charge:
        # The provider may take seconds: no database connection is held meanwhile.
        await self._db.release_connection()
        try:
            async with asyncio.timeout(self._settings.payment_timeout_seconds):
                return await self._payments.charge(
                    payment_token,
                    reservation.amount_minor,
                    reservation.currency,
                    idempotency_key=reservation.payment_key,
                )
        except BadUserInput:
            # Declined or an unknown token: this call charged nothing. If this request
            # made the attempt, nothing was ever charged under its key and the stock goes
            # back now; a resumed attempt may have been charged by an earlier request (a
            # provider answers a repeated key with its first result, but a retry that
            # differs may be refused): the reconciler decides, by asking the provider.
            if fresh:
                await self.release(reservation)
            raise
        except ServiceUnavailable:
            # The provider says it is down: this call charged nothing, but another call
            # with the same key (a double submit, an earlier attempt) may have. The
            # reservation stays for the retry, or the reconciler (released at expiry if
            # nothing was charged).
            raise
        except (TimeoutError, OSError) as exc:
            # Unknown whether the card was charged: keep the reservation for the retry or
            # the reconciler, who will ask the provider.
            raise PaymentNotConfirmed() from exc

    # -- 3. confirm ----------------------------------------------------------------------------
    async def confirm(self, reservation: OrderReservation, charge: Charge, email: str) -> OrderView:
        """Turn a charged reservation into the order, once. Also the reconciler's step."""
        async with self._units.begin() as uow:
            session = uow.session
            claimed = await session.execute(
                update(OrderReservation)
                .where(
                    col(OrderReservation.id) == reservation.id,
                    col(OrderReservation.status) == ReservationStatus.RESERVED.value,
                    col(OrderReservation.attempt) == reservation.attempt,
                )
                .values(status=ReservationStatus.CONFIRMED.value, resolved_at=utcnow())
            )
            if rows_changed(claimed) == 1:
                order, lines = self._order_from(reservation, charge)
                session.add(order)
                await session.flush()
                assert order.id is not None
                for line in lines:
                    line.order_id = order.id
                    session.add(line)
                await session.execute(
                    update(OrderReservation)
                    .where(col(OrderReservation.id) == reservation.id)
                    .values(order_id=order.id)
                )
                self._orders.queue_confirmation(uow, order, lines, email)
                if reservation.checkout_id is not None:
                    await session.execute(
                        update(Checkout)
                        .where(col(Checkout.id) == reservation.checkout_id)
                        .values(
                            status=CheckoutStatus.PLACED.value,
                            order_id=order.id,
                            updated_at=utcnow(),
                        )
                    )
                await uow.commit()
                log.info("order placed", extra={"code": codes.mask(order.code)})
                return OrderView(order, lines)
        # Someone else confirmed it first (a concurrent retry, the reconciler), or it was
        # released meanwhile.
        view = await self._orders.by_idempotency_key(
            reservation.user_id, reservation.idempotency_key, reservation.request_fingerprint
        )
        if view is not None:
            return view
        await self._void(reservation, charge)
        raise ServiceUnavailable(
            "The order could not be confirmed; nothing was charged. Try again."
        )

    @staticmethod
    def _order_from(reservation: OrderReservation, charge: Charge) -> tuple[Order, list[OrderLine]]:
        payload: dict[str, Any] = json.loads(reservation.payload_json)
        address = payload["address"]
        order = Order(
            code=reservation.code,
            user_id=reservation.user_id,
            status=OrderStatus.PLACED.value,
            currency=reservation.currency,
            subtotal_minor=payload["subtotal_minor"],
            shipping_minor=payload["shipping_minor"],
            tax_minor=payload["tax_minor"],
            total_minor=reservation.amount_minor,
            ship_name=address["name"],
            ship_line1=address["line1"],
            ship_line2=address["line2"],
            ship_city=address["city"],
            ship_postal_code=address["postal_code"],
            ship_country=address["country"],
            payment_brand=charge.brand,
            payment_last4=charge.last4,
            payment_reference=charge.reference,
            idempotency_key=reservation.idempotency_key,
            request_fingerprint=reservation.request_fingerprint,
            estimated_delivery=datetime.fromisoformat(payload["estimated_delivery"]).date(),
            # the promise made at checkout: never moved afterwards
            promised_delivery=datetime.fromisoformat(payload["estimated_delivery"]).date(),
            placed_at=reservation.created_at,
            updated_at=utcnow(),
        )
        lines = [
            OrderLine(
                order_id=0,
                product_id=line["product_id"],
                sku=line["sku"],
                name=line["name"],
                unit_price_minor=line["unit_price_minor"],
                quantity=line["quantity"],
            )
            for line in payload["lines"]
        ]
        return order, lines

    async def _order_for(self, request: Request) -> OrderView:
        view = await self._orders.by_idempotency_key(
            request.who.user_id, request.key, request.fingerprint
        )
        if view is None:  # confirmed a moment ago by another request: read again
            raise ServiceUnavailable()
        return view

    # -- release and void ---------------------------------------------------------------------
    async def release(self, reservation: OrderReservation, *, if_expired: bool = False) -> bool:
        """Not charged: give the stock back (once). False if it was no longer reserved —
        or, `if_expired` (the reconciler), if a retry has renewed it meanwhile."""
        async with self._units.begin() as uow:
            released = await release_in(uow.session, reservation, if_expired=if_expired)
            await uow.commit()
        return released

    async def _void(self, reservation: OrderReservation, charge: Charge) -> None:
        """Charged for a reservation that was released: give the money back."""
        try:
            await self._payments.refund(
                charge.reference,
                charge.amount_minor,
                charge.currency,
                idempotency_key=f"void:{reservation.payment_key}",
            )
        except (DomainError, TimeoutError, OSError):
            log.exception("void of a charge without an order did not go through")

    # -- the reconciler -----------------------------------------------------------------------
    async def reconcile(self, older_than: timedelta, limit: int = 50, max_batches: int = 20) -> int:
        """Finish reservations whose request is gone (app/orders/reconciliation.py)."""
        return await self._reconciliation.reconcile(older_than, limit, max_batches)
