"""Order use cases. The only place that commits order changes.

Every door that takes a code goes through `_owned()`: the limiter is charged by
`CodeLookups.begin`, then ONE query filters by code *and* owner, so "no such order" and
"not yours" are the same path, the same error and the same time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from app.catalog.models import Product
from app.db import Database, row_values, utcnow
from app.errors import BadUserInput, Conflict, OrderNotFound
from app.events.broker import Broker, InProcessBroker, order_topic
from app.notifications import templates
from app.notifications.outbox import enqueue_email
from app.orders.inputs import (
    AddressInput,
    LineInput,
    clean_address,
    clean_idempotency_key,
    clean_lines,
)
from app.orders.models import CANCELLABLE, Checkout, Order, OrderLine, OrderStatus
from app.orders.pricing import Totals, add_business_days, compute_totals
from app.pagination import CursorCodec, clamp_page_size
from app.payments.provider import Charge, PaymentProvider
from app.security import codes
from app.security.lookups import CodeLookups
from app.security.policy import Viewer, mask_payment, require_viewer
from app.settings import Settings

log = logging.getLogger("app.orders")


# The one statement behind order(code): by code AND owner, so "not yours" and "not found"
# are the same query. Built once (the hot path), executed on a Core connection.
_OWNED_ORDER = select(*Order.__table__.columns).where(  # type: ignore[attr-defined]
    Order.__table__.c.code == bindparam("code"),  # type: ignore[attr-defined]
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
    lines: list[OrderLine]


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
        payments: PaymentProvider,
        lookups: CodeLookups,
        cursors: CursorCodec,
        settings: Settings,
        events: Broker | None = None,
    ) -> None:
        self.events: Broker = events or InProcessBroker()
        self._db = db
        self._payments = payments
        self._lookups = lookups
        self._cursors = cursors
        self._settings = settings

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

    def products_for(self, session: Session, lines: list[LineInput]) -> dict[str, Product]:
        skus = [line.sku for line in lines]
        found = session.execute(
            select(Product).where(Product.sku.in_(skus), Product.active)
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
    def place_order(
        self,
        viewer: Viewer | None,
        lines: list[LineInput],
        address: AddressInput,
        payment_token: str,
        idempotency_key: str,
    ) -> OrderView:
        """Reserve stock, charge, create the order and queue the email in one transaction.

        The same idempotency key from the same user returns the first order; the charge is
        made with a key derived from it, so even a race between two requests moves money
        once. A declined or failed payment rolls back the stock and leaves no order.
        """
        who = require_viewer(viewer)
        key = clean_idempotency_key(idempotency_key)
        lines = clean_lines(lines)
        address = clean_address(address)
        if len(payment_token) > 100:
            raise BadUserInput("Unknown payment token.", field="paymentToken")
        return self.place_prepared(
            who, lines, address, payment_token, key, fingerprint(lines, address, payment_token)
        )

    def place_prepared(
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
        on_placed: Callable[[Session, Order], None] | None = None,
    ) -> OrderView:
        """Placement from validated input. A checkout passes its reserved `code`, the prices
        the customer saw (`expected_prices`: a difference refuses the order, nothing is
        charged) and `on_placed`, run inside the same transaction."""
        existing = self._by_idempotency_key(who.user_id, key, print_)
        if existing is not None:
            return existing

        charge: Charge | None = None
        try:
            with self._db.write() as session:
                products = self.products_for(session, lines)
                if expected_prices is not None:
                    check_prices(lines, products, expected_prices)
                for index, line in enumerate(lines):
                    self._reserve_stock(session, products[line.sku], line.quantity, index)
                now = utcnow()
                line_rows = [
                    OrderLine(
                        order_id=0,
                        product_id=products[line.sku].id or 0,
                        sku=line.sku,
                        name=products[line.sku].name,
                        unit_price_minor=products[line.sku].price_minor,
                        quantity=line.quantity,
                    )
                    for line in lines
                ]
                totals = self.totals_for([r.unit_price_minor * r.quantity for r in line_rows])
                currency = next(iter(products.values())).currency
                order = Order(
                    code=code or self.fresh_code(session),
                    user_id=who.user_id,
                    status=OrderStatus.PLACED.value,
                    currency=currency,
                    subtotal_minor=totals.subtotal_minor,
                    shipping_minor=totals.shipping_minor,
                    tax_minor=totals.tax_minor,
                    total_minor=totals.total_minor,
                    ship_name=address.name,
                    ship_line1=address.line1,
                    ship_line2=address.line2,
                    ship_city=address.city,
                    ship_postal_code=address.postal_code,
                    ship_country=address.country,
                    payment_brand="",
                    payment_last4="",
                    payment_reference="",
                    idempotency_key=key,
                    request_fingerprint=print_,
                    estimated_delivery=self.estimated_delivery(now),
                    placed_at=now,
                    updated_at=now,
                )
                session.add(order)
                session.flush()  # a concurrent duplicate key fails here, before any charge
                for row in line_rows:
                    row.order_id = order.id or 0
                    session.add(row)
                charge = self._payments.charge(
                    payment_token,
                    totals.total_minor,
                    currency,
                    idempotency_key=f"order:{who.public_id}:{key}",
                )
                order.payment_brand = charge.brand
                order.payment_last4 = charge.last4
                order.payment_reference = charge.reference
                self._queue_confirmation(session, order, line_rows, who.email)
                if on_placed is not None:
                    on_placed(session, order)
                session.commit()
        except IntegrityError:
            # Lost a race with the same idempotency key: the winner's order is the answer.
            existing = self._by_idempotency_key(who.user_id, key, print_)
            if existing is None:
                raise
            return existing
        except BaseException:
            if charge is not None:
                self._void(charge, who, key)
            raise
        log.info("order placed", extra={"code": codes.mask(order.code)})
        return OrderView(order, line_rows)

    def _void(self, charge: Charge, who: Viewer, key: str) -> None:
        """The order did not commit after the card was charged: give the money back."""
        try:
            self._payments.refund(
                charge.reference,
                charge.amount_minor,
                charge.currency,
                idempotency_key=f"void:{who.public_id}:{key}",
            )
        except Exception:
            log.exception("void after failed order commit did not go through")

    def _reserve_stock(self, session: Session, product: Product, quantity: int, index: int) -> None:
        """Conditional decrement: atomic in both SQLite and PostgreSQL, never below zero."""
        result = session.execute(
            update(Product)
            .where(Product.id == product.id, col(Product.stock) >= quantity)
            .values(stock=col(Product.stock) - quantity)
        )
        if result.rowcount != 1:
            left = session.execute(
                select(Product.stock).where(Product.id == product.id)
            ).scalar_one()
            raise OutOfStock(
                f"Only {max(left, 0)} of {product.sku} left in stock.",
                field=f"lines[{index}].quantity",
                details={"sku": product.sku, "available": max(left, 0)},
            )

    @staticmethod
    def fresh_code(session: Session) -> str:
        """A code free among orders and reserved checkout codes (one namespace)."""
        while True:  # 75 random bits: a collision is astronomically rare, but handled
            code = codes.generate()
            taken = session.execute(
                select(exists().where(Order.code == code) | exists().where(Checkout.code == code))
            ).scalar()
            if not taken:
                return code

    def _by_idempotency_key(self, user_id: int, key: str, print_: str) -> OrderView | None:
        with self._db.read() as session:
            order = session.execute(
                select(Order).where(Order.user_id == user_id, col(Order.idempotency_key) == key)
            ).scalar_one_or_none()
            if order is None:
                return None
            if order.request_fingerprint != print_:
                raise Conflict(
                    "This idempotencyKey was already used for a different order.",
                    field="idempotencyKey",
                )
            return OrderView(order, self._lines(session, order))

    def _queue_confirmation(
        self, session: Session, order: Order, lines: list[OrderLine], email: str
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
    def _owned(self, session: Session, code: str, owner_id: int) -> Order | None:
        return session.execute(
            select(Order).where(Order.code == code, col(Order.user_id) == owner_id)
        ).scalar_one_or_none()

    @staticmethod
    def _lines(session: Session, order: Order) -> list[OrderLine]:
        return list(
            session.execute(
                select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)
            ).scalars()
        )

    def get_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> Order:
        """`order(code)`: the owner's order (lines are loaded by the API on demand)."""
        who, code = self._lookups.begin(viewer, raw_code, client_ip)
        row = self._db.fetch_one(_OWNED_ORDER, {"code": code, "owner": who.user_id})
        if row is None:
            self._lookups.failed(who, client_ip)
            raise OrderNotFound()
        return Order.model_construct(**row_values(_OWNED_ORDER, row))

    def publish(self, order: Order, kind: str) -> None:
        """Tell live subscribers of this order that it changed (after the commit)."""
        assert order.id is not None
        self.events.publish(order_topic(order.id), {"type": kind, "status": order.status})

    def reload_owned(self, viewer: Viewer, order_id: int) -> Order | None:
        """A subscriber's fresh view: by id *and* owner, like every other read."""
        with self._db.read() as session:
            return session.execute(
                select(Order).where(Order.id == order_id, Order.user_id == viewer.user_id)
            ).scalar_one_or_none()

    def lines_for_orders(self, order_ids: list[int]) -> dict[int, list[OrderLine]]:
        """Batch loader: lines of many orders in one statement."""
        result: dict[int, list[OrderLine]] = {order_id: [] for order_id in order_ids}
        with self._db.read() as session:
            rows = session.execute(
                select(OrderLine).where(OrderLine.order_id.in_(order_ids)).order_by(OrderLine.id)
            ).scalars()
            for row in rows:
                result[row.order_id].append(row)
        return result

    def list_orders(
        self, viewer: Viewer | None, first: int | None, after: str | None, filt: OrderFilter
    ) -> OrderPage:
        """`myOrders`: newest first, keyset-paginated on (placed_at, code)."""
        who = require_viewer(viewer)
        size = clamp_page_size(first, self._settings.max_page_size)
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
            placed_iso, last_code = self._cursors.decode("order", after)
            placed = datetime.fromisoformat(str(placed_iso))
            query = query.where(
                or_(
                    col(Order.placed_at) < placed,
                    and_(Order.placed_at == placed, col(Order.code) < str(last_code)),
                )
            )
        query = query.order_by(Order.placed_at.desc(), col(Order.code).desc()).limit(size + 1)
        with self._db.read() as session:
            rows = list(session.execute(query).scalars())
        page = rows[:size]
        lines = self.lines_for_orders([o.id for o in page if o.id is not None]) if page else {}
        return OrderPage(
            orders=[OrderView(o, lines.get(o.id or 0, [])) for o in page],
            cursors=[
                self._cursors.encode("order", [o.placed_at.isoformat(), o.code]) for o in page
            ],
            has_next_page=len(rows) > size,
        )

    # -- changes by the owner -----------------------------------------------------------
    def cancel_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> OrderView:
        """Owner cancels before shipment: full refund, stock released, email queued."""
        who, code = self._lookups.begin(viewer, raw_code, client_ip)
        with self._db.write() as session:
            order = self._owned(session, code, who.user_id)
            if order is None:
                session.rollback()
                self._lookups.failed(who, client_ip)
                raise OrderNotFound()
            # Only the owner gets here, so telling the status reveals nothing new.
            if order.status == OrderStatus.CANCELLED.value:
                raise Conflict("The order is already cancelled.", field="code")
            if OrderStatus(order.status) not in CANCELLABLE:
                raise Conflict(
                    "The order has shipped and can no longer be cancelled.", field="code"
                )
            lines = self._lines(session, order)
            refund_amount = order.total_minor - order.refunded_minor
            changed = session.execute(
                update(Order)
                .where(Order.id == order.id, col(Order.status) == order.status)
                .values(
                    status=OrderStatus.CANCELLED.value,
                    cancelled_at=utcnow(),
                    updated_at=utcnow(),
                    refunded_minor=order.total_minor,
                )
            )
            if changed.rowcount != 1:
                raise Conflict("The order changed meanwhile; try again.", field="code")
            for line in lines:
                session.execute(
                    update(Product)
                    .where(Product.id == line.product_id)
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
            # Refund last: if it fails, nothing above is committed and the owner can retry;
            # the provider's idempotency key makes a retry refund once.
            if refund_amount > 0:
                self._payments.refund(
                    order.payment_reference,
                    refund_amount,
                    order.currency,
                    idempotency_key=f"cancel:{order.code}",
                )
            session.commit()
            order.status = OrderStatus.CANCELLED.value
            order.refunded_minor = order.total_minor
        log.info("order cancelled", extra={"code": codes.mask(order.code)})
        self.publish(order, "STATUS_CHANGED")
        return OrderView(order, lines)

    def reorder(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> CartDraft:
        """The old lines as a cart draft at today's prices, with availability."""
        who, code = self._lookups.begin(viewer, raw_code, client_ip)
        with self._db.read() as session:
            order = self._owned(session, code, who.user_id)
            if order is None:
                self._lookups.failed(who, client_ip)
                raise OrderNotFound()
            old_lines = self._lines(session, order)
            products = {
                p.id: p
                for p in session.execute(
                    select(Product).where(
                        col(Product.id).in_([line.product_id for line in old_lines])
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
        totals = self.totals_for([d.unit_price_minor * d.quantity for d in draft if d.available])
        return CartDraft(draft, order.currency, totals, unavailable)


def address_lines(order: Order) -> list[str]:
    parts = [
        order.ship_name,
        order.ship_line1,
        order.ship_line2,
        f"{order.ship_postal_code} {order.ship_city}",
        order.ship_country,
    ]
    return [p for p in parts if p]
