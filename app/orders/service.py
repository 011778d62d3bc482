"""Order use cases: the service the API calls, a façade over one module per use case —
reading orders (`history.py`: order(code), myOrders, the loaders), `cancel.py`, `reorder.py`
— and placeOrder's entry with the pricing and helpers placement and checkout share (the
placement itself — reserve, charge, confirm — is app/orders/placement.py).

Every door that takes a code is declared once (app/security/doors.py): the limiter is
charged by the gate, then ONE query filters by code *and* owner, so "no such order" and
"not yours" are the same path, the same error and the same time.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.catalog.models import Product
from app.db import Database
from app.errors import BadUserInput, Conflict
from app.events.broker import Broker, InProcessBroker
from app.notifications import templates
from app.orders.addresses import address_lines
from app.orders.cancel import Cancellation
from app.orders.history import OrderHistory, order_lines
from app.orders.inputs import (
    AddressInput,
    LineInput,
    clean_address,
    clean_idempotency_key,
    clean_lines,
)
from app.orders.models import Checkout, Order, OrderLine, OrderReservation
from app.orders.pricing import Totals, add_business_days, compute_totals
from app.orders.reorder import Reorder
from app.orders.views import (
    CartDraft,
    DraftLine,
    OrderFilter,
    OrderPage,
    OrderView,
    OutOfStock,
    PriceChanged,
    check_prices,
    fingerprint,
)
from app.pagination import CursorCodec
from app.payments.refunds import Refunds
from app.security import codes
from app.security.doors import Doors
from app.security.lookups import CodeLookups
from app.security.policy import Viewer, mask_payment, require_viewer
from app.settings import Settings
from app.unit_of_work import UnitOfWork, UnitsOfWork

if TYPE_CHECKING:
    from app.orders.placement import OrderPlacement

__all__ = [
    "CartDraft",
    "DraftLine",
    "OrderFilter",
    "OrderPage",
    "OrderService",
    "OrderView",
    "OutOfStock",
    "PriceChanged",
    "check_prices",
    "fingerprint",
]

log = logging.getLogger("app.orders")


class OrderService:
    def __init__(
        self,
        db: Database,
        refunds: Refunds,
        lookups: CodeLookups,
        cursors: CursorCodec,
        settings: Settings,
        events: Broker | None = None,
    ) -> None:
        self.events: Broker = events or InProcessBroker()
        self._db = db
        self._settings = settings
        self.placement: OrderPlacement | None = None  # set by the composition root
        doors = Doors(lookups)
        units = UnitsOfWork(db, self.events)
        self._history = OrderHistory(db, doors, cursors, settings.max_page_size)
        self._cancellation = Cancellation(units, doors, refunds)
        self._reorder = Reorder(db, doors, self.totals_for)

    # -- the use cases (one module each) --------------------------------------------------
    async def get_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> Order:
        return await self._history.get_order(viewer, raw_code, client_ip)

    async def list_orders(
        self,
        viewer: Viewer | None,
        first: int | None,
        after: str | None,
        filt: OrderFilter,
        summaries: bool = False,
    ) -> OrderPage:
        return await self._history.list_orders(viewer, first, after, filt, summaries)

    async def reload_owned(self, viewer: Viewer, order_id: int) -> Order | None:
        return await self._history.reload_owned(viewer, order_id)

    async def lines_for_orders(self, order_ids: list[int]) -> dict[int, list[OrderLine]]:
        return await self._history.lines_for_orders(order_ids)

    async def cancel_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> OrderView:
        return await self._cancellation.cancel_order(viewer, raw_code, client_ip)

    async def reorder(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> CartDraft:
        return await self._reorder.reorder(viewer, raw_code, client_ip)

    # -- pricing ------------------------------------------------------------------------
    def totals_for(self, line_totals: list[int]) -> Totals:
        s = self._settings
        return compute_totals(
            line_totals,
            shipping_flat=s.shipping_flat_minor,
            free_from=s.free_shipping_from_minor,
            tax_basis_points=s.tax_rate_basis_points,
        )

    def estimated_delivery(self, placed: datetime) -> date:
        return add_business_days(placed.date(), self._settings.delivery_business_days)

    @staticmethod
    async def products_for(session: AsyncSession, lines: list[LineInput]) -> dict[str, Product]:
        skus = [line.sku for line in lines]
        found = (
            await session.execute(
                select(Product).where(col(Product.sku).in_(skus), col(Product.active))
            )
        ).scalars()
        products = {p.sku: p for p in found}
        for index, line in enumerate(lines):
            if line.sku not in products:
                raise BadUserInput("Unknown product.", field=f"lines[{index}].sku")
        currencies = {p.currency for p in products.values()}
        if len(currencies) > 1:
            raise BadUserInput("All items must be in one currency.", field="lines")
        return products

    # -- checkout -----------------------------------------------------------------------
    async def place_order(
        self,
        viewer: Viewer | None,
        lines: list[LineInput],
        address: AddressInput,
        payment_token: str,
        idempotency_key: str,
    ) -> OrderView:
        """Reserve stock, charge, create the order and queue the email (placement.py).

        The same idempotency key from the same user returns the first order; the charge is
        made with a key derived from it, so even a race between two requests moves money
        once. A declined payment releases the stock and leaves no order.
        """
        who = require_viewer(viewer)
        key = clean_idempotency_key(idempotency_key)
        lines = clean_lines(lines)
        address = clean_address(address)
        if len(payment_token) > 100:
            raise BadUserInput("Unknown payment token.", field="paymentToken")
        assert self.placement is not None
        return await self.placement.place(
            who, lines, address, payment_token, key, fingerprint(lines, address, payment_token)
        )

    @staticmethod
    async def fresh_code(session: AsyncSession) -> str:
        """A code free among orders, reserved checkout codes and reservations (one
        namespace)."""
        while True:  # 75 random bits: a collision is astronomically rare, but handled
            code = codes.generate()
            taken = (
                await session.execute(
                    select(
                        exists().where(col(Order.code) == code)
                        | exists().where(col(Checkout.code) == code)
                        | exists().where(col(OrderReservation.code) == code)
                    )
                )
            ).scalar()
            if not taken:
                return code

    async def by_idempotency_key(self, user_id: int, key: str, print_: str) -> OrderView | None:
        """The order placed with this key, if any; a different request under the same key
        is a CONFLICT."""
        async with self._db.read() as session:
            order = (
                await session.execute(
                    select(Order).where(
                        col(Order.user_id) == user_id, col(Order.idempotency_key) == key
                    )
                )
            ).scalar_one_or_none()
            if order is None:
                return None
            if order.request_fingerprint != print_:
                raise Conflict(
                    "This idempotencyKey was already used for a different order.",
                    field="idempotencyKey",
                )
            return OrderView(order, await order_lines(session, order))

    @staticmethod
    def queue_confirmation(
        uow: UnitOfWork, order: Order, lines: list[OrderLine], email: str
    ) -> None:
        """The confirmation email, queued in the unit of work that creates the order."""
        subject, body = templates.order_confirmation(
            {
                "code": codes.display(order.code),
                "name": order.ship_name,
                "lines": [
                    {
                        "sku": line.sku,
                        "name": line.name,
                        "quantity": line.quantity,
                        "unit_price_minor": line.unit_price_minor,
                        "line_total_minor": line.unit_price_minor * line.quantity,
                    }
                    for line in lines
                ],
                "currency": order.currency,
                "subtotal_minor": order.subtotal_minor,
                "shipping_minor": order.shipping_minor,
                "tax_minor": order.tax_minor,
                "total_minor": order.total_minor,
                "address_lines": address_lines(order),
                "estimated_delivery": order.estimated_delivery.isoformat(),
                "payment": mask_payment(order.payment_brand, order.payment_last4),
            }
        )
        uow.email(
            kind="order_confirmation",
            recipient=email,
            subject=subject,
            body_text=body,
            dedupe_key=f"order-confirmation.{order.code}",
        )
