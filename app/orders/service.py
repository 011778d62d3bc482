"""Order use cases: order(code), myOrders, cancelOrder, reorder, and placeOrder's entry
(the placement itself — reserve, charge, confirm — is app/orders/placement.py).

Every door that takes a code goes through `_owned()`: the limiter is charged by
`CodeLookups.begin`, then ONE query filters by code *and* owner, so "no such order" and
"not yours" are the same path, the same error and the same time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from app.catalog.models import Product
from app.db import Database, as_models, row_values, utcnow
from app.errors import BadUserInput, Conflict, OrderNotFound, ServiceUnavailable
from app.events.broker import Broker, InProcessBroker, order_topic
from app.notifications import templates
from app.notifications.outbox import enqueue_email
from app.orders.addresses import address_lines
from app.orders.inputs import (
    AddressInput,
    LineInput,
    clean_address,
    clean_idempotency_key,
    clean_lines,
)
from app.orders.models import (
    CANCELLABLE,
    Checkout,
    Order,
    OrderLine,
    OrderReservation,
    OrderStatus,
)
from app.orders.pricing import Totals, add_business_days, compute_totals
from app.pagination import CursorCodec, clamp_page_size
from app.payments.models import PaymentRefund
from app.payments.refunds import Refunds
from app.security import codes
from app.security.lookups import CodeLookups
from app.security.policy import Viewer, mask_payment, require_viewer
from app.settings import Settings

if TYPE_CHECKING:
    from app.orders.placement import OrderPlacement

log = logging.getLogger("app.orders")


# The one statement behind order(code): by code AND owner, so "not yours" and "not found"
# are the same query. Built once (the hot path), executed on a Core connection.
_OWNED_ORDER = select(*Order.__table__.columns).where(  # type: ignore[attr-defined]
    Order.__table__.c.code == bindparam("code"),  # type: ignore[attr-defined]
    Order.__table__.c.user_id == bindparam("owner"),  # type: ignore[attr-defined]
)
# The history page (myOrders without filters), newest first, keyset on (placed_at, code).
_ORDER = Order.__table__
_FIRST_PAGE = (
    select(*_ORDER.columns)
    .where(_ORDER.c.user_id == bindparam("owner"))
    .order_by(_ORDER.c.placed_at.desc(), _ORDER.c.code.desc())
    .limit(bindparam("limit"))
)
_PAGE_AFTER = (
    select(*_ORDER.columns)
    .where(
        _ORDER.c.user_id == bindparam("owner"),
        or_(
            _ORDER.c.placed_at < bindparam("placed"),
            and_(_ORDER.c.placed_at == bindparam("placed"), _ORDER.c.code < bindparam("code")),
        ),
    )
    .order_by(_ORDER.c.placed_at.desc(), _ORDER.c.code.desc())
    .limit(bindparam("limit"))
)
_LINES_OF_ORDERS = (
    select(*OrderLine.__table__.columns)
    .where(OrderLine.__table__.c.order_id.in_(bindparam("ids", expanding=True)))
    .order_by(OrderLine.__table__.c.id)
)
# A live subscriber's re-read: by id *and* owner.
_OWNED_BY_ID = select(*Order.__table__.columns).where(  # type: ignore[attr-defined]
    Order.__table__.c.id == bindparam("id"),  # type: ignore[attr-defined]
    Order.__table__.c.user_id == bindparam("owner"),  # type: ignore[attr-defined]
)


class OutOfStock(BadUserInput):
    default_message = "Not enough stock."


class PriceChanged(Conflict):
    default_message = "Prices changed since the summary; review the new total and confirm again."


def check_prices(
    lines: list[LineInput], products: dict[str, Product], expected: dict[str, int]
) -> None:
    """Refuse to charge anything the customer was not shown."""
    changes = [
        {"sku": line.sku, "was": expected.get(line.sku), "now": products[line.sku].price_minor}
        for line in lines
        if expected.get(line.sku) != products[line.sku].price_minor
    ]
    if changes:
        detail = ", ".join(f"{c['sku']}: {c['was']} → {c['now']}" for c in changes)
        raise PriceChanged(
            f"Prices changed since the summary ({detail}, in minor units). Review the "
            "checkout (updateCheckout reprices it) and confirm again.",
            field="checkoutCode",
            details={"changes": changes},
        )


@dataclass(frozen=True)
class OrderView:
    order: Order
    lines: list[OrderLine] | None  # None: left to the API's loader


@dataclass(frozen=True)
class OrderFilter:
    statuses: list[str] = field(default_factory=list)
    placed_from: datetime | None = None
    placed_to: datetime | None = None
    text: str | None = None


@dataclass(frozen=True)
class OrderPage:
    orders: list[OrderView]
    cursors: list[str]
    has_next_page: bool


@dataclass(frozen=True)
class DraftLine:
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    available: bool
    in_stock: int


@dataclass(frozen=True)
class CartDraft:
    lines: list[DraftLine]
    currency: str
    totals: Totals
    unavailable_skus: list[str]


def fingerprint(lines: list[LineInput], address: AddressInput, payment_token: str) -> str:
    canonical = json.dumps(
        {
            "lines": sorted((line.sku, line.quantity) for line in lines),
            "address": address.__dict__,
            "payment": payment_token,
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


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
        self._refunds = refunds
        self._lookups = lookups
        self._cursors = cursors
        self._settings = settings
        self.placement: OrderPlacement | None = None  # set by the composition root

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
            await session.execute(select(Product).where(Product.sku.in_(skus), Product.active))
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
                        exists().where(Order.code == code)
                        | exists().where(Checkout.code == code)
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
                    select(Order).where(Order.user_id == user_id, col(Order.idempotency_key) == key)
                )
            ).scalar_one_or_none()
            if order is None:
                return None
            if order.request_fingerprint != print_:
                raise Conflict(
                    "This idempotencyKey was already used for a different order.",
                    field="idempotencyKey",
                )
            return OrderView(order, await self._lines(session, order))

    @staticmethod
    def queue_confirmation(
        session: AsyncSession, order: Order, lines: list[OrderLine], email: str
    ) -> None:
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
        enqueue_email(
            session,
            kind="order_confirmation",
            recipient=email,
            subject=subject,
            body_text=body,
            dedupe_key=f"order-confirmation.{order.code}",
        )

    # -- lookups ------------------------------------------------------------------------
    @staticmethod
    async def _owned(session: AsyncSession, code: str, owner_id: int) -> Order | None:
        found: Order | None = (
            await session.execute(
                select(Order).where(Order.code == code, col(Order.user_id) == owner_id)
            )
        ).scalar_one_or_none()
        return found

    @staticmethod
    async def _lines(session: AsyncSession, order: Order) -> list[OrderLine]:
        return list(
            (
                await session.execute(
                    select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)
                )
            ).scalars()
        )

    async def get_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> Order:
        """`order(code)`: the owner's order (lines are loaded by the API on demand)."""
        who, code = await self._lookups.begin(viewer, raw_code, client_ip)
        row = await self._db.fetch_one(_OWNED_ORDER, {"code": code, "owner": who.user_id})
        if row is None:
            await self._lookups.failed(who, client_ip)
            raise OrderNotFound()
        return Order.model_construct(**row_values(_OWNED_ORDER, row))

    def publish(self, order: Order, kind: str) -> None:
        """Tell live subscribers of this order that it changed (after the commit)."""
        assert order.id is not None
        self.events.publish(order_topic(order.id), {"type": kind, "status": order.status})

    async def reload_owned(self, viewer: Viewer, order_id: int) -> Order | None:
        """A subscriber's fresh view: by id *and* owner, like every other read."""
        row = await self._db.fetch_one(_OWNED_BY_ID, {"id": order_id, "owner": viewer.user_id})
        if row is None:
            return None
        return Order.model_construct(**row_values(_OWNED_BY_ID, row))

    async def lines_for_orders(self, order_ids: list[int]) -> dict[int, list[OrderLine]]:
        """Batch loader: lines of many orders in one statement."""
        result: dict[int, list[OrderLine]] = {order_id: [] for order_id in order_ids}
        rows = await self._db.fetch_all(_LINES_OF_ORDERS, {"ids": order_ids})
        for row in as_models(OrderLine, _LINES_OF_ORDERS, rows):
            result[row.order_id].append(row)
        return result

    async def list_orders(
        self, viewer: Viewer | None, first: int | None, after: str | None, filt: OrderFilter
    ) -> OrderPage:
        """`myOrders`: newest first, keyset-paginated on (placed_at, code)."""
        who = require_viewer(viewer)
        size = clamp_page_size(first, self._settings.max_page_size)
        if filt == OrderFilter():  # the history as customers page through it: prebuilt
            rows = await self._plain_page(who, size, after)
        else:
            rows = await self._filtered_page(who, size, after, filt)
        page = rows[:size]
        # The lines of the page are left to the API's loader (only fetched if selected).
        return OrderPage(
            orders=[OrderView(o, None) for o in page],
            cursors=[
                self._cursors.encode("order", [o.placed_at.isoformat(), o.code]) for o in page
            ],
            has_next_page=len(rows) > size,
        )

    async def _plain_page(self, who: Viewer, size: int, after: str | None) -> list[Order]:
        if after:
            placed, code = self._order_cursor(after)
            params = {"owner": who.user_id, "limit": size + 1, "placed": placed, "code": code}
            rows = await self._db.fetch_all(_PAGE_AFTER, params)
            return as_models(Order, _PAGE_AFTER, rows)
        rows = await self._db.fetch_all(_FIRST_PAGE, {"owner": who.user_id, "limit": size + 1})
        return as_models(Order, _FIRST_PAGE, rows)

    def _order_cursor(self, after: str) -> tuple[datetime, str]:
        placed_iso, last_code = self._cursors.decode("order", after)
        return datetime.fromisoformat(str(placed_iso)), str(last_code)

    async def _filtered_page(
        self, who: Viewer, size: int, after: str | None, filt: OrderFilter
    ) -> list[Order]:
        query = select(Order).where(Order.user_id == who.user_id)
        if filt.statuses:
            query = query.where(Order.status.in_(filt.statuses))
        if filt.placed_from is not None:
            query = query.where(Order.placed_at >= filt.placed_from)
        if filt.placed_to is not None:
            query = query.where(Order.placed_at < filt.placed_to)
        if filt.text:
            text = filt.text.strip()
            if len(text) > 100:
                raise BadUserInput("Search text must have at most 100 characters.", field="text")
            pattern = (
                "%"
                + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            query = query.where(
                exists().where(
                    col(OrderLine.order_id) == Order.id,
                    or_(
                        func.lower(col(OrderLine.name)).like(pattern, escape="\\"),
                        func.lower(col(OrderLine.sku)).like(pattern, escape="\\"),
                    ),
                )
            )
        if after:
            placed, last_code = self._order_cursor(after)
            query = query.where(
                or_(
                    col(Order.placed_at) < placed,
                    and_(Order.placed_at == placed, col(Order.code) < last_code),
                )
            )
        query = query.order_by(Order.placed_at.desc(), col(Order.code).desc()).limit(size + 1)
        async with self._db.read() as session:
            return list((await session.execute(query)).scalars())

    # -- changes by the owner -----------------------------------------------------------
    async def cancel_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> OrderView:
        """Owner cancels before shipment: stock released, email queued, full refund.

        The cancellation commits first, with the refund written down as PENDING; the
        provider is called after the commit (never inside the transaction) and the refund
        completed then. If the provider fails, the order stays cancelled and the refund is
        sent again by the reconciler (same idempotency key: the money moves once).
        """
        who, code = await self._lookups.begin(viewer, raw_code, client_ip)
        async with self._db.write() as session:
            order = await self._owned(session, code, who.user_id)
            if order is not None:
                lines, refund = await self._cancel(session, order, who)
                await session.commit()
        if order is None:
            await self._lookups.failed(who, client_ip)
            raise OrderNotFound()
        log.info("order cancelled", extra={"code": codes.mask(order.code)})
        self.publish(order, "STATUS_CHANGED")
        if refund is not None:
            try:
                await self._refunds.send(refund)
                order.refunded_minor += refund.amount_minor
            except ServiceUnavailable:
                log.warning("cancellation refund pending", extra={"code": codes.mask(order.code)})
        return OrderView(order, lines)

    async def _cancel(
        self, session: AsyncSession, order: Order, who: Viewer
    ) -> tuple[list[OrderLine], PaymentRefund | None]:
        # Only the owner gets here, so telling the status reveals nothing new.
        if order.status == OrderStatus.CANCELLED.value:
            raise Conflict("The order is already cancelled.", field="code")
        if OrderStatus(order.status) not in CANCELLABLE:
            raise Conflict("The order has shipped and can no longer be cancelled.", field="code")
        assert order.id is not None
        lines = await self._lines(session, order)
        refund_amount = order.total_minor - await Refunds.committed_minor(session, order)
        now = utcnow()
        changed = await session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status) == order.status)
            .values(status=OrderStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("The order changed meanwhile; try again.", field="code")
        for line in lines:
            await session.execute(
                update(Product)
                .where(col(Product.id) == line.product_id)
                .values(stock=col(Product.stock) + line.quantity)
            )
        subject, body = templates.order_cancelled(
            {
                "code": codes.display(order.code),
                "name": order.ship_name,
                "refund_minor": refund_amount,
                "currency": order.currency,
            }
        )
        enqueue_email(
            session,
            kind="order_cancelled",
            recipient=who.email,
            subject=subject,
            body_text=body,
            dedupe_key=f"order-cancelled.{order.code}",
        )
        refund = None
        if refund_amount > 0:
            refund = Refunds.add(
                session,
                order=order,
                reason="cancel",
                key=f"cancel:{order.code}",
                amount_minor=refund_amount,
                requested_by=who.user_id,
            )
        set_committed_value(order, "status", OrderStatus.CANCELLED.value)
        set_committed_value(order, "cancelled_at", now)
        return lines, refund

    async def reorder(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> CartDraft:
        """The old lines as a cart draft at today's prices, with availability."""
        who, code = await self._lookups.begin(viewer, raw_code, client_ip)
        async with self._db.read() as session:
            order = await self._owned(session, code, who.user_id)
            if order is not None:
                old_lines = await self._lines(session, order)
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
        if order is None:
            await self._lookups.failed(who, client_ip)
            raise OrderNotFound()
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
        totals = self.totals_for([d.unit_price_minor * d.quantity for d in draft if d.available])
        return CartDraft(draft, order.currency, totals, unavailable)

