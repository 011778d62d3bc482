"""shipOrder: hand packed units to a carrier — a shipment with its lines, the order moved
on and the shipping email queued, in one unit of work."""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from app.accounts.models import User
from app.db import utcnow
from app.errors import BadUserInput, Conflict
from app.notifications import templates
from app.orders import add_business_days, address_lines
from app.orders.models import Order, OrderStatus
from app.security import codes
from app.security.policy import Viewer
from app.shipments.fulfilment import SHIP_ORDER, Fulfilment, counts, find_order, move_order
from app.shipments.fulfilment import requested as requested_units
from app.shipments.inputs import (
    LineRequest,
    clean_carrier,
    clean_line_requests,
    clean_tracking_number,
)
from app.shipments.models import Shipment, ShipmentLine, ShipmentStatus
from app.shipments.results import ShippedLine, ShipResult
from app.shipments.transitions import (
    Progress,
    Step,
    check_allowed,
    order_estimate,
    order_status_after,
)
from app.unit_of_work import UnitOfWork

log = logging.getLogger("app.shipments")


class Shipping:
    def __init__(self, deps: Fulfilment) -> None:
        self._deps = deps

    async def ship_order(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        carrier: str,
        tracking_number: str,
        lines: list[LineRequest] | None = None,
        estimated_delivery: date | None = None,
    ) -> ShipResult:
        """Hand packed units to a carrier: a shipment with its lines, the order status moved
        on, and the shipping email queued in the same transaction."""
        deps = self._deps
        entry = await deps.doors.enter(SHIP_ORDER, viewer, raw_code, client_ip)
        who = entry.who
        carrier = clean_carrier(carrier)
        tracking = clean_tracking_number(tracking_number)
        requests = clean_line_requests(lines)
        today = utcnow().date()
        if estimated_delivery is not None and estimated_delivery < today:
            raise BadUserInput(
                "The estimated delivery cannot be in the past.", field="estimatedDelivery"
            )
        try:
            async with entry.misses(), deps.units.begin() as uow:
                session = uow.session
                order = await find_order(session, entry.code, lock=True)
                current = OrderStatus(order.status)
                check_allowed(current, Step.SHIP)
                found = await counts(session, order)
                wanted = requested_units(
                    found.lines,
                    requests,
                    lambda line: line.ready_to_ship,
                    "Nothing packed is waiting to ship: pack the items (packOrder) first.",
                )
                taken = (
                    await session.execute(
                        select(col(Shipment.id)).where(
                            col(Shipment.carrier) == carrier,
                            col(Shipment.tracking_number) == tracking,
                        )
                    )
                ).first()
                if taken is not None:
                    raise Conflict(
                        "This tracking number is already used for another shipment.",
                        field="trackingNumber",
                    )
                now = utcnow()
                estimate = estimated_delivery or max(
                    order.estimated_delivery, add_business_days(today, 1)
                )
                shipment = Shipment(
                    order_id=order.id or 0,
                    carrier=carrier,
                    tracking_number=tracking,
                    status=ShipmentStatus.LABEL_CREATED.value,
                    estimated_delivery=estimate,
                    shipped_by=who.user_id,
                    shipped_at=now,
                    updated_at=now,
                )
                session.add(shipment)
                await session.flush()
                for line_id, quantity in wanted.items():
                    session.add(
                        ShipmentLine(
                            shipment_id=shipment.id or 0, order_line_id=line_id, quantity=quantity
                        )
                    )
                before = found.progress()
                after = Progress(
                    ordered=before.ordered,
                    packed=before.packed,
                    shipped=before.shipped + sum(wanted.values()),
                    shipments=before.shipments + 1,
                    delivered_shipments=before.delivered_shipments,
                )
                new_status = order_status_after(current, Step.SHIP, after)
                pending = [
                    s.estimated_delivery
                    for s in [*found.shipments, shipment]
                    if s.status != ShipmentStatus.DELIVERED.value and s.estimated_delivery
                ]
                await move_order(
                    session,
                    order,
                    new_status,
                    estimated_delivery=order_estimate(
                        order.estimated_delivery, pending, after.shipped >= after.ordered
                    ),
                )
                by_id = {line.order_line_id: line for line in found.lines}
                await queue_shipping_email(
                    uow,
                    order,
                    shipment,
                    [ShippedLine(by_id[i].sku, by_id[i].name, n) for i, n in wanted.items()],
                    partial=new_status is OrderStatus.PARTIALLY_SHIPPED,
                )
                await deps.audit.record(
                    actor=who,
                    action="ship_order",
                    outcome="shipped",
                    order_id=order.id,
                    code=order.code,
                    reason=f"{carrier}, {sum(wanted.values())} unit(s)",
                    client_ip=client_ip,
                    session=session,
                )
                uow.publish(order, "STATUS_CHANGED")
                await uow.commit()
        except IntegrityError:
            # Lost a race for the same tracking number; the transaction rolled back.
            raise Conflict(
                "This tracking number is already used for another shipment.",
                field="trackingNumber",
            ) from None
        log.info(
            "order shipped",
            extra={"code": codes.mask(order.code), "status": order.status, "user": who.public_id},
        )
        return ShipResult(order, shipment)


async def queue_shipping_email(
    uow: UnitOfWork,
    order: Order,
    shipment: Shipment,
    lines: list[ShippedLine],
    *,
    partial: bool,
) -> None:
    recipient = (
        await uow.session.execute(select(col(User.email)).where(col(User.id) == order.user_id))
    ).scalar_one()
    subject, body = templates.render(
        "order_shipped",
        {
            "code": codes.display(order.code),
            "name": order.ship_name,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "estimated_delivery": (
                shipment.estimated_delivery or order.estimated_delivery
            ).isoformat(),
            "lines": [{"sku": x.sku, "name": x.name, "quantity": x.quantity} for x in lines],
            "partial": partial,
            "address_lines": address_lines(order),
        },
    )
    uow.email(
        kind="order_shipped",
        recipient=recipient,
        subject=subject,
        body_text=body,
        dedupe_key=f"order-shipped.{shipment.id}",
    )
