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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app import metrics
from app.accounts.models import User
from app.catalog.models import Product
from app.db import Database, utcnow
from app.errors import BadUserInput, Conflict, DomainError, ServiceUnavailable
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
from app.orders.service import OrderService, OrderView, OutOfStock, check_prices
from app.payments.provider import Charge, PaymentProvider
from app.security import codes
from app.security.policy import Viewer
from app.settings import Settings

log = logging.getLogger("app.orders")

# After a failed look at the provider, the reconciler tries that reservation again after
# this long.
RECHECK_SECONDS = 30.0


class PaymentNotConfirmed(ServiceUnavailable):
    default_message = (
        "The payment provider did not answer in time. Nothing is lost: retry with the same "
        "idempotency key (you are charged at most once), or wait for the confirmation email."
    )


@dataclass(frozen=True)
class Request:
    """What the customer asked for, validated."""

    who: Viewer
    lines: list[LineInput]
    address: AddressInput
    key: str
    fingerprint: str
    code: str | None = None  # a checkout's reserved code
    expected_prices: dict[str, int] | None = None  # what the checkout summary showed
    checkout_id: int | None = None


class OrderPlacement:
    def __init__(
        self, db: Database, payments: PaymentProvider, orders: OrderService, settings: Settings
    ) -> None:
        self._db = db
        self._payments = payments
        self._orders = orders
        self._settings = settings
        self._ttl = timedelta(seconds=settings.reservation_ttl_seconds)
        self._older_than = timedelta(seconds=settings.reconcile_after_seconds)

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
            async with self._db.write() as session:
                found = await self._reserve_in(session, request)
                await session.commit()
                return found
        except IntegrityError:
            # A concurrent request with the same key reserved first: carry on with its
            # reservation (the provider's idempotency makes both charges one).
            async with self._db.write() as session:
                found = await self._reserve_in(session, request)
                await session.commit()
                return found

    async def _reserve_in(
        self, session: AsyncSession, request: Request
    ) -> tuple[OrderReservation, bool]:
        who = request.who
        existing = await self._by_key(session, who.user_id, request.key)
        if existing is not None:
            if existing.status == ReservationStatus.CONFIRMED.value:
                return existing, False
            if existing.status == ReservationStatus.RESERVED.value:
                if existing.request_fingerprint != request.fingerprint:
                    raise Conflict(
                        "This idempotencyKey was already used for a different order.",
                        field="idempotencyKey",
                    )
                # A retry after a crash or a timeout: charge again with the same payment
                # key (the provider answers with the first charge if there was one). The
                # reservation's life starts anew, so the reconciler does not release it
                # while this charge is under way.
                now = utcnow()
                existing.expires_at = now + self._ttl
                existing.next_check_at = now + self._older_than
                session.add(existing)
                await session.flush()
                return existing, False
            # RELEASED (declined, expired): a new attempt under the same key
        products = await self._orders.products_for(session, request.lines)
        if request.expected_prices is not None:
            check_prices(request.lines, products, request.expected_prices)
        for index, line in enumerate(request.lines):
            await self._take_stock(session, products[line.sku], line.quantity, index)
        now = utcnow()
        lines = [
            {
                "product_id": products[line.sku].id,
                "sku": line.sku,
                "name": products[line.sku].name,
                "unit_price_minor": products[line.sku].price_minor,
                "quantity": line.quantity,
            }
            for line in request.lines
        ]
        totals = self._orders.totals_for(
            [products[line.sku].price_minor * line.quantity for line in request.lines]
        )
        payload = {
            "lines": lines,
            "subtotal_minor": totals.subtotal_minor,
            "shipping_minor": totals.shipping_minor,
            "tax_minor": totals.tax_minor,
            "address": request.address.__dict__,
            "estimated_delivery": self._orders.estimated_delivery(now).isoformat(),
        }
        currency = next(iter(products.values())).currency
        if existing is not None:
            attempt = existing.attempt + 1
            existing.status = ReservationStatus.RESERVED.value
            existing.attempt = attempt
            # A declined key may be remembered by the provider: a new attempt, a new key.
            existing.payment_key = _payment_key(who, request.key, attempt)
            existing.request_fingerprint = request.fingerprint
            existing.amount_minor = totals.total_minor
            existing.currency = currency
            existing.payload_json = json.dumps(payload)
            existing.created_at = now
            existing.expires_at = now + self._ttl
            existing.next_check_at = now + self._older_than
            existing.resolved_at = None
            session.add(existing)
            await session.flush()
            return existing, True
        reservation = OrderReservation(
            user_id=who.user_id,
            idempotency_key=request.key,
            request_fingerprint=request.fingerprint,
            code=request.code or await self._orders.fresh_code(session),
            checkout_id=request.checkout_id,
            payment_key=_payment_key(who, request.key, 1),
            amount_minor=totals.total_minor,
            currency=currency,
            payload_json=json.dumps(payload),
            created_at=now,
            expires_at=now + self._ttl,
            next_check_at=now + self._older_than,
        )
        session.add(reservation)
        await session.flush()  # a concurrent duplicate key fails here
        return reservation, True

    @staticmethod
    async def _take_stock(
        session: AsyncSession, product: Product, quantity: int, index: int
    ) -> None:
        """Conditional decrement: atomic in both SQLite and PostgreSQL, never below zero."""
        result = await session.execute(
            update(Product)
            .where(col(Product.id) == product.id, col(Product.stock) >= quantity)
            .values(stock=col(Product.stock) - quantity)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            left = (
                await session.execute(select(Product.stock).where(col(Product.id) == product.id))
            ).scalar_one()
            raise OutOfStock(
                f"Only {max(left, 0)} of {product.sku} left in stock.",
                field=f"lines[{index}].quantity",
                details={"sku": product.sku, "available": max(left, 0)},
            )

    @staticmethod
    async def _by_key(session: AsyncSession, user_id: int, key: str) -> OrderReservation | None:
        query = select(OrderReservation).where(
            col(OrderReservation.user_id) == user_id,
            col(OrderReservation.idempotency_key) == key,
        )
        found: OrderReservation | None = (
            await session.execute(query.with_for_update())
        ).scalar_one_or_none()
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
        async with self._db.write() as session:
            claimed = await session.execute(
                update(OrderReservation)
                .where(
                    col(OrderReservation.id) == reservation.id,
                    col(OrderReservation.status) == ReservationStatus.RESERVED.value,
                    col(OrderReservation.attempt) == reservation.attempt,
                )
                .values(status=ReservationStatus.CONFIRMED.value, resolved_at=utcnow())
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
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
                self._orders.queue_confirmation(session, order, lines, email)
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
                await session.commit()
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
        async with self._db.write() as session:
            released = await self._release_in(session, reservation, if_expired=if_expired)
            await session.commit()
        return released

    @staticmethod
    async def _release_in(
        session: AsyncSession, reservation: OrderReservation, *, if_expired: bool = False
    ) -> bool:
        conditions = [
            col(OrderReservation.id) == reservation.id,
            col(OrderReservation.status) == ReservationStatus.RESERVED.value,
            col(OrderReservation.attempt) == reservation.attempt,
        ]
        if if_expired:
            conditions.append(col(OrderReservation.expires_at) <= utcnow())
        changed = await session.execute(
            update(OrderReservation)
            .where(*conditions)
            .values(status=ReservationStatus.RELEASED.value, resolved_at=utcnow())
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        for line in json.loads(reservation.payload_json)["lines"]:
            await session.execute(
                update(Product)
                .where(col(Product.id) == line["product_id"])
                .values(stock=col(Product.stock) + line["quantity"])
            )
        reservation.status = ReservationStatus.RELEASED.value
        return True

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
                            select(OrderReservation, User.email)
                            .join(User, col(User.id) == OrderReservation.user_id)
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
            await self.confirm(reservation, charge, email)
            metrics.reconciled("confirmed")
            return True
        if reservation.expires_at <= now:
            if await self.release(reservation, if_expired=True):
                metrics.reconciled("released")
                return True
            return False
        await self._next_check(reservation, reservation.expires_at)
        return False

    async def _next_check(self, reservation: OrderReservation, when: datetime) -> None:
        async with self._db.write() as session:
            await session.execute(
                update(OrderReservation)
                .where(
                    col(OrderReservation.id) == reservation.id,
                    col(OrderReservation.status) == ReservationStatus.RESERVED.value,
                    col(OrderReservation.next_check_at) == reservation.next_check_at,
                )
                .values(next_check_at=when)
            )
            await session.commit()


def _payment_key(who: Viewer, key: str, attempt: int) -> str:
    base = f"order:{who.public_id}:{key}"
    return base if attempt == 1 else f"{base}#{attempt}"
