"""cancelOrder: the owner cancels before shipment — stock released, email queued, full
refund.

The cancellation commits first (one unit of work), with the refund written down as PENDING;
the provider is called after the commit (never inside the transaction) and the refund
completed then. If the provider fails, the order stays cancelled and the refund is sent
again by the reconciler (same idempotency key: the money moves once).
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlmodel import col

from app.catalog.models import Product
from app.db import utcnow
from app.errors import Conflict, ServiceUnavailable
from app.notifications import templates
from app.orders.history import order_lines, owned_order
from app.orders.models import CANCELLABLE, Order, OrderLine, OrderStatus
from app.orders.views import OrderView
from app.payments.models import PaymentRefund
from app.payments.refunds import Refunds
from app.security import codes
from app.security.doors import Doors, NoMatch, Subject, Who, declare
from app.security.policy import Viewer
from app.status_change import change_status
from app.unit_of_work import UnitOfWork, UnitsOfWork

log = logging.getLogger("app.orders")

CANCEL_ORDER = declare("cancelOrder", Who.OWNER, Subject.ORDER)


class Cancellation:
    def __init__(self, units: UnitsOfWork, doors: Doors, refunds: Refunds) -> None:
        self._units = units
        self._doors = doors
        self._refunds = refunds

    async def cancel_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> OrderView:
        entry = await self._doors.enter(CANCEL_ORDER, viewer, raw_code, client_ip)
        async with entry.misses(), self._units.begin() as uow:
            order = await owned_order(uow.session, entry.code, entry.who.user_id)
            if order is None:
                raise NoMatch()
            lines, refund = await _cancel(uow, order, entry.who)
            uow.publish(order, "STATUS_CHANGED")
            await uow.commit()
        log.info("order cancelled", extra={"code": codes.mask(order.code)})
        if refund is not None:
            try:
                await self._refunds.send(refund)
                order.refunded_minor += refund.amount_minor
            except ServiceUnavailable:
                log.warning("cancellation refund pending", extra={"code": codes.mask(order.code)})
        return OrderView(order, lines)


async def _cancel(
    uow: UnitOfWork, order: Order, who: Viewer
) -> tuple[list[OrderLine], PaymentRefund | None]:
    # Only the owner gets here, so telling the status reveals nothing new.
    session = uow.session
    if order.status == OrderStatus.CANCELLED.value:
        raise Conflict("The order is already cancelled.", field="code")
    if OrderStatus(order.status) not in CANCELLABLE:
        raise Conflict("The order has shipped and can no longer be cancelled.", field="code")
    assert order.id is not None
    lines = await order_lines(session, order)
    refund_amount = order.total_minor - await Refunds.committed_minor(session, order)
    now = utcnow()
    await change_status(
        session,
        order,
        OrderStatus.CANCELLED,
        noun="order",
        field="code",
        cancelled_at=now,
        updated_at=now,
    )
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
    uow.email(
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
    return lines, refund
