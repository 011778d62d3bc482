"""reorder: an old order's lines as a cart draft at today's prices, with availability."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlmodel import col

from app.catalog.models import Product
from app.db import Database
from app.orders.history import order_lines, owned_order
from app.orders.pricing import Totals
from app.orders.views import CartDraft, DraftLine
from app.security.doors import Doors, NoMatch, Subject, Who, declare
from app.security.policy import Viewer

REORDER = declare("reorder", Who.OWNER, Subject.ORDER)


class Reorder:
    def __init__(
        self, db: Database, doors: Doors, totals_for: Callable[[list[int]], Totals]
    ) -> None:
        self._db = db
        self._doors = doors
        self._totals_for = totals_for

    async def reorder(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> CartDraft:
        """The old lines as a cart draft at today's prices, with availability."""
        entry = await self._doors.enter(REORDER, viewer, raw_code, client_ip)
        async with entry.misses(), self._db.read() as session:
            order = await owned_order(session, entry.code, entry.who.user_id)
            if order is None:
                raise NoMatch()
            old_lines = await order_lines(session, order)
            products = {
                p.id: p
                for p in (
                    await session.execute(
                        select(Product).where(
                            col(Product.id).in_([line.product_id for line in old_lines])
                        )
                    )
                ).scalars()
            }
        draft: list[DraftLine] = []
        unavailable: list[str] = []
        for line in old_lines:
            product = products.get(line.product_id)
            if product is None or not product.active:
                unavailable.append(line.sku)
                continue
            ok = product.stock >= line.quantity
            if not ok:
                unavailable.append(line.sku)
            draft.append(
                DraftLine(
                    sku=product.sku,
                    name=product.name,
                    quantity=line.quantity,
                    unit_price_minor=product.price_minor,
                    available=ok,
                    in_stock=max(product.stock, 0),
                )
            )
        totals = self._totals_for([d.unit_price_minor * d.quantity for d in draft if d.available])
        return CartDraft(draft, order.currency, totals, unavailable)
