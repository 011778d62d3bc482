"""Step 1 of placeOrder (app/orders/placement.py): the reservation — prices checked, stock
taken with conditional decrements (never below zero), the order code fixed, written under
the customer's idempotency key — and its release (the stock back, once). Both run inside the
caller's unit of work."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.catalog.models import Product
from app.db import utcnow
from app.errors import Conflict
from app.orders.inputs import AddressInput, LineInput
from app.orders.models import OrderReservation, ReservationStatus
from app.orders.service import OrderService
from app.orders.views import OutOfStock, check_prices
from app.security.policy import Viewer
from app.tables import rows_changed


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


class Reservations:
    def __init__(self, orders: OrderService, ttl: timedelta, older_than: timedelta) -> None:
        self._orders = orders  # the shop's rules: products, totals, delivery, codes
        self._ttl = ttl
        self._older_than = older_than

    async def reserve_in(
        self, session: AsyncSession, request: Request
    ) -> tuple[OrderReservation, bool]:
        """The reservation to charge for, and whether this request made it (a new attempt)
        rather than resumed one that an earlier request may have charged already."""
        who = request.who
        existing = await by_key(session, who.user_id, request.key)
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
            await take_stock(session, products[line.sku], line.quantity, index)
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
            existing.payment_key = payment_key(who, request.key, attempt)
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
            payment_key=payment_key(who, request.key, 1),
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


async def take_stock(session: AsyncSession, product: Product, quantity: int, index: int) -> None:
    """Conditional decrement: atomic in both SQLite and PostgreSQL, never below zero."""
    result = await session.execute(
        update(Product)
        .where(col(Product.id) == product.id, col(Product.stock) >= quantity)
        .values(stock=col(Product.stock) - quantity)
    )
    if rows_changed(result) != 1:
        left = (
            await session.execute(select(col(Product.stock)).where(col(Product.id) == product.id))
        ).scalar_one()
        raise OutOfStock(
            f"Only {max(left, 0)} of {product.sku} left in stock.",
            field=f"lines[{index}].quantity",
            details={"sku": product.sku, "available": max(left, 0)},
        )


async def by_key(session: AsyncSession, user_id: int, key: str) -> OrderReservation | None:
    query = select(OrderReservation).where(
        col(OrderReservation.user_id) == user_id,
        col(OrderReservation.idempotency_key) == key,
    )
    found: OrderReservation | None = (
        await session.execute(query.with_for_update())
    ).scalar_one_or_none()
    return found


async def release_in(
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
    if rows_changed(changed) != 1:
        return False
    for line in json.loads(reservation.payload_json)["lines"]:
        await session.execute(
            update(Product)
            .where(col(Product.id) == line["product_id"])
            .values(stock=col(Product.stock) + line["quantity"])
        )
    reservation.status = ReservationStatus.RELEASED.value
    return True


def payment_key(who: Viewer, key: str, attempt: int) -> str:
    base = f"order:{who.public_id}:{key}"
    return base if attempt == 1 else f"{base}#{attempt}"
