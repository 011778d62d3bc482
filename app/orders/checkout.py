"""Checkout use cases: a priced summary whose order code is reserved before purchase.

startCheckout reserves a code (the same generator and namespace as orders); placeOrder with
that code turns the checkout into the order with the same code. The checkout code is an
order code in every respect: it goes through the same limiter, and "expired", "not yours"
and "unknown" give the same ORDER_NOT_FOUND answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.catalog.models import Product
from app.db import Database, utcnow
from app.errors import BadUserInput, Conflict
from app.orders.inputs import AddressInput, LineInput, clean_address, clean_lines
from app.orders.models import Checkout, CheckoutStatus
from app.orders.placement import OrderPlacement
from app.orders.pricing import Totals
from app.orders.service import OrderService, OrderView
from app.security.doors import Doors, NoMatch, Subject, Who, declare
from app.security.lookups import CodeLookups
from app.security.policy import Viewer, require_viewer
from app.unit_of_work import UnitsOfWork

CHECKOUT = declare("checkout", Who.OWNER, Subject.CHECKOUT)
UPDATE_CHECKOUT = declare("updateCheckout", Who.OWNER, Subject.CHECKOUT)
PLACE_ORDER = declare("placeOrder", Who.OWNER, Subject.CHECKOUT)


@dataclass(frozen=True)
class SummaryLine:
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    in_stock: int

    @property
    def available(self) -> bool:
        return self.in_stock >= self.quantity


@dataclass(frozen=True)
class CheckoutView:
    checkout: Checkout
    lines: list[SummaryLine]
    order_code: str | None = None

    @property
    def expired(self) -> bool:
        return self.checkout.expires_at <= utcnow()


class CheckoutService:
    def __init__(
        self,
        db: Database,
        orders: OrderService,
        placement: OrderPlacement,
        lookups: CodeLookups,
        ttl_seconds: int,
    ) -> None:
        self._db = db
        self._orders = orders
        self._placement = placement
        self._doors = Doors(lookups)
        self._units = UnitsOfWork(db, orders.events)
        self._ttl = timedelta(seconds=ttl_seconds)

    # -- pricing ------------------------------------------------------------------------
    async def _price(
        self, session: AsyncSession, lines: list[LineInput]
    ) -> tuple[list[SummaryLine], Totals, str]:
        products = await self._orders.products_for(session, lines)
        summary = [
            SummaryLine(
                sku=line.sku,
                name=products[line.sku].name,
                quantity=line.quantity,
                unit_price_minor=products[line.sku].price_minor,
                in_stock=max(products[line.sku].stock, 0),
            )
            for line in lines
        ]
        totals = self._orders.totals_for([s.unit_price_minor * s.quantity for s in summary])
        return summary, totals, next(iter(products.values())).currency

    @staticmethod
    def _apply(
        checkout: Checkout,
        summary: list[SummaryLine],
        totals: Totals,
        currency: str,
        address: AddressInput,
    ) -> None:
        checkout.lines_json = json.dumps([[s.sku, s.quantity, s.unit_price_minor] for s in summary])
        checkout.currency = currency
        checkout.subtotal_minor = totals.subtotal_minor
        checkout.shipping_minor = totals.shipping_minor
        checkout.tax_minor = totals.tax_minor
        checkout.total_minor = totals.total_minor
        checkout.ship_name = address.name
        checkout.ship_line1 = address.line1
        checkout.ship_line2 = address.line2
        checkout.ship_city = address.city
        checkout.ship_postal_code = address.postal_code
        checkout.ship_country = address.country

    # -- use cases ----------------------------------------------------------------------
    async def start(
        self, viewer: Viewer | None, lines: list[LineInput], address: AddressInput
    ) -> CheckoutView:
        """Validate, price, estimate delivery and reserve the order code. Stock is shown,
        not taken: it is reserved only when the order is placed."""
        who = require_viewer(viewer)
        lines = clean_lines(lines)
        address = clean_address(address)
        async with self._units.begin() as uow:
            session = uow.session
            summary, totals, currency = await self._price(session, lines)
            now = utcnow()
            checkout = Checkout(
                code=await self._orders.fresh_code(session),
                user_id=who.user_id,
                lines_json="[]",
                currency=currency,
                subtotal_minor=0,
                shipping_minor=0,
                tax_minor=0,
                total_minor=0,
                ship_name="",
                ship_line1="",
                ship_city="",
                ship_postal_code="",
                ship_country="",
                estimated_delivery=self._orders.estimated_delivery(now),
                created_at=now,
                updated_at=now,
                expires_at=now + self._ttl,
            )
            self._apply(checkout, summary, totals, currency, address)
            session.add(checkout)
            await uow.commit()
        return CheckoutView(checkout, summary)

    @staticmethod
    async def _owned_open(session: AsyncSession, who: Viewer, code: str) -> Checkout | None:
        """One query by code and owner; expired is the same answer as unknown (None)."""
        checkout: Checkout | None = (
            await session.execute(
                select(Checkout).where(
                    col(Checkout.code) == code, col(Checkout.user_id) == who.user_id
                )
            )
        ).scalar_one_or_none()
        if checkout is None or (
            checkout.status == CheckoutStatus.OPEN.value and checkout.expires_at <= utcnow()
        ):
            return None
        return checkout

    async def get(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> CheckoutView:
        entry = await self._doors.enter(CHECKOUT, viewer, raw_code, client_ip)
        async with entry.misses(), self._db.read() as session:
            checkout = await self._owned_open(session, entry.who, entry.code)
            if checkout is None:
                raise NoMatch()
            return await self._view(session, checkout)

    async def update(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        lines: list[LineInput] | None,
        address: AddressInput | None,
    ) -> CheckoutView:
        """Reprice at today's prices (with new lines or address if given); same code."""
        entry = await self._doors.enter(UPDATE_CHECKOUT, viewer, raw_code, client_ip)
        new_lines = clean_lines(lines) if lines is not None else None
        new_address = clean_address(address) if address is not None else None
        async with entry.misses(), self._units.begin() as uow:
            session = uow.session
            checkout = await self._owned_open(session, entry.who, entry.code)
            if checkout is None:
                raise NoMatch()
            if checkout.status != CheckoutStatus.OPEN.value:
                raise Conflict("This checkout has already been placed.", field="code")
            current_lines = new_lines or _stored_lines(checkout)
            summary, totals, currency = await self._price(session, current_lines)
            self._apply(checkout, summary, totals, currency, new_address or _address(checkout))
            now = utcnow()
            checkout.updated_at = now
            checkout.expires_at = now + self._ttl  # activity keeps a checkout alive
            checkout.estimated_delivery = self._orders.estimated_delivery(now)
            session.add(checkout)
            await uow.commit()
        return CheckoutView(checkout, summary)

    async def place(
        self, viewer: Viewer | None, raw_code: str, client_ip: str, payment_token: str
    ) -> OrderView:
        """Turn the checkout into the order with the same code. Placing twice returns the
        same order (the code is the idempotency handle); changed prices are refused."""
        entry = await self._doors.enter(PLACE_ORDER, viewer, raw_code, client_ip)
        who = entry.who
        if len(payment_token) > 100:
            raise BadUserInput("Unknown payment token.", field="paymentToken")
        async with entry.misses(), self._db.read() as session:
            checkout = await self._owned_open(session, who, entry.code)
            if checkout is None:
                raise NoMatch()
        key = f"checkout:{checkout.code}"
        print_ = hashlib.sha256(key.encode()).hexdigest()
        stored = json.loads(checkout.lines_json)
        lines = [LineInput(sku, qty) for sku, qty, _ in stored]
        expected = {sku: price for sku, _, price in stored}
        return await self._placement.place(
            who,
            lines,
            _address(checkout),
            payment_token,
            key,
            print_,
            code=checkout.code,
            expected_prices=expected,
            checkout_id=checkout.id,
        )

    @staticmethod
    async def _view(session: AsyncSession, checkout: Checkout) -> CheckoutView:
        stored = json.loads(checkout.lines_json)
        products = {
            p.sku: p
            for p in (
                await session.execute(
                    select(Product).where(col(Product.sku).in_([sku for sku, _, _ in stored]))
                )
            ).scalars()
        }
        lines = [
            SummaryLine(
                sku=sku,
                name=products[sku].name if sku in products else sku,
                quantity=qty,
                unit_price_minor=price,
                in_stock=max(products[sku].stock, 0) if sku in products else 0,
            )
            for sku, qty, price in stored
        ]
        order_code = checkout.code if checkout.status == CheckoutStatus.PLACED.value else None
        return CheckoutView(checkout, lines, order_code)


def _stored_lines(checkout: Checkout) -> list[LineInput]:
    return [LineInput(sku, qty) for sku, qty, _ in json.loads(checkout.lines_json)]


def _address(checkout: Checkout) -> AddressInput:
    return AddressInput(
        name=checkout.ship_name,
        line1=checkout.ship_line1,
        line2=checkout.ship_line2,
        city=checkout.ship_city,
        postal_code=checkout.ship_postal_code,
        country=checkout.ship_country,
    )
