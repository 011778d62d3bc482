"""What every return use case shares: its dependencies, the door declarations (DESIGN §3),
the order's state as returns see it, the staff steps' locked transaction, the status change
(compare-and-set, app/status_change.py) and the customer's emails.

Every change locks the order row (SELECT ... FOR UPDATE on PostgreSQL; SQLite writers are
serialised by BEGIN IMMEDIATE) and reads what is free to return *inside* that transaction,
so concurrent requests can never together return more than was delivered. A miss (no such
order, no such RMA) is counted against the caller and audited by the door after the
transaction has ended: the limiter is Redis and the audit entry commits on its own.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.models import User
from app.audit.service import AuditLog
from app.db import Database
from app.notifications import templates
from app.orders.models import Order, OrderLine, OrderStatus
from app.payments.models import PaymentRefund, RefundStatus
from app.payments.refunds import Refunds
from app.returns.models import ReturnLine, ReturnRequest, ReturnStatus
from app.returns.rules import LineEligibility, Parcel, committed_units, line_eligibility
from app.returns.views import ReturnView
from app.security import codes
from app.security.doors import Doors, Entry, NoMatch, StaffBudget, Subject, Who, declare
from app.security.policy import Viewer
from app.security.roles import Role
from app.settings import Settings
from app.shipments.models import Shipment, ShipmentLine, ShipmentStatus
from app.status_change import change_status
from app.unit_of_work import UnitOfWork, UnitsOfWork

# DESIGN §3 "returns admin".
RETURN_READERS = (Role.SUPPORT, Role.WAREHOUSE, Role.ADMIN)
RETURN_DECIDERS = (Role.SUPPORT, Role.ADMIN)
RETURN_RECEIVERS = (Role.WAREHOUSE, Role.ADMIN)
RETURN_REFUNDERS = (Role.ADMIN,)
# Where customers send their parcels (printed in the return emails).
RETURN_ADDRESS = ["Orders Returns", "Dock 3, 1 Warehouse Road", "10115 Berlin", "DE"]
# `PaymentRefund.reason` of a return's refund: `Refunds` runs the completion for it.
REFUND_REASON = "return"

RETURN_ELIGIBILITY = declare("returnEligibility", Who.OWNER, Subject.ORDER)
# The owner; or SUPPORT/ADMIN for the customer, with a ticket (app/returns/on_behalf.py).
REQUEST_RETURN = declare(
    "requestReturn",
    Who.OWNER_OR_STAFF,
    Subject.ORDER,
    Role.SUPPORT,
    Role.ADMIN,
    staff_budget=StaffBudget.SUPPORT,
)
RETURN_REQUEST = declare(
    "returnRequest", Who.OWNER_OR_STAFF, Subject.RMA, *RETURN_READERS, audit="return_lookup"
)
APPROVE_RETURN = declare(
    "approveReturn", Who.STAFF, Subject.RMA, *RETURN_DECIDERS, audit="approve_return"
)
REJECT_RETURN = declare(
    "rejectReturn", Who.STAFF, Subject.RMA, *RETURN_DECIDERS, audit="reject_return"
)
RECEIVE_RETURN = declare(
    "receiveReturn", Who.STAFF, Subject.RMA, *RETURN_RECEIVERS, audit="receive_return"
)
REFUND_RETURN = declare(
    "refundReturn", Who.STAFF, Subject.RMA, *RETURN_REFUNDERS, audit="refund_return"
)


@dataclass(frozen=True)
class ReturnsDeps:
    """The dependencies of the return use cases (built once by ReturnService)."""

    db: Database
    units: UnitsOfWork
    doors: Doors
    audit: AuditLog
    refunds: Refunds
    settings: Settings


@dataclass(frozen=True)
class OrderState:
    lines: list[OrderLine]
    parcels: list[Parcel]

    def line_by_sku(self) -> dict[str, OrderLine]:
        return {line.sku.upper(): line for line in self.lines}


async def owned_order(session: AsyncSession, code: str, who: Viewer, *, lock: bool) -> Order:
    """By code *and* owner in one query: not found and not yours are one answer
    (`NoMatch`)."""
    query = select(Order).where(col(Order.code) == code, col(Order.user_id) == who.user_id)
    if lock:
        query = query.with_for_update()
    order: Order | None = (await session.execute(query)).scalar_one_or_none()
    if order is None:
        raise NoMatch()
    return order


@contextlib.asynccontextmanager
async def locked(
    deps: ReturnsDeps, entry: Entry
) -> AsyncIterator[tuple[UnitOfWork, ReturnRequest, Order]]:
    """A staff step's unit of work, holding the return and its locked order (the caller
    commits). An RMA that matches nothing is the door's miss, once the transaction ended."""
    async with entry.misses(), deps.units.begin() as uow:
        ret, order = await locked_return(uow.session, entry.code)
        yield uow, ret, order


async def locked_return(session: AsyncSession, rma: str) -> tuple[ReturnRequest, Order]:
    """The return and its order, with the order row locked (the return read after)."""
    found = (
        await session.execute(
            select(col(ReturnRequest.id), col(ReturnRequest.order_id)).where(
                col(ReturnRequest.rma_code) == rma
            )
        )
    ).one_or_none()
    if found is None:
        raise NoMatch()
    return_id, order_id = found
    order = (
        await session.execute(select(Order).where(col(Order.id) == order_id).with_for_update())
    ).scalar_one()
    ret = (
        await session.execute(
            select(ReturnRequest)
            .where(col(ReturnRequest.id) == return_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return ret, order


async def order_state(session: AsyncSession, order: Order) -> OrderState:
    """The order's lines and, per line and parcel, what was delivered when and how much of
    it returns already hold."""
    assert order.id is not None
    lines = list(
        (
            await session.execute(
                select(OrderLine)
                .where(col(OrderLine.order_id) == order.id)
                .order_by(col(OrderLine.id))
            )
        ).scalars()
    )
    shipped: dict[tuple[int, int], int] = defaultdict(int)
    delivered_at: dict[int, datetime | None] = {}
    for line_id, shipment_id, quantity, status, when in (
        await session.execute(
            select(
                col(ShipmentLine.order_line_id),
                col(ShipmentLine.shipment_id),
                col(ShipmentLine.quantity),
                col(Shipment.status),
                col(Shipment.delivered_at),
            )
            .join(Shipment, col(Shipment.id) == col(ShipmentLine.shipment_id))
            .where(col(Shipment.order_id) == order.id)
        )
    ).all():
        shipped[(line_id, shipment_id)] += quantity
        delivered_at[shipment_id] = when if status == ShipmentStatus.DELIVERED.value else None
    committed: dict[tuple[int, int], int] = defaultdict(int)
    for line_id, shipment_id, quantity, received, status in (
        await session.execute(
            select(
                col(ReturnLine.order_line_id),
                col(ReturnLine.shipment_id),
                col(ReturnLine.quantity),
                col(ReturnLine.received_quantity),
                col(ReturnRequest.status),
            )
            .join(ReturnRequest, col(ReturnRequest.id) == col(ReturnLine.return_id))
            .where(col(ReturnRequest.order_id) == order.id)
        )
    ).all():
        committed[(line_id, shipment_id)] += committed_units(
            ReturnStatus(status), quantity, received
        )
    parcels = [
        Parcel(
            order_line_id=line_id,
            shipment_id=shipment_id,
            quantity=quantity,
            delivered_at=delivered_at[shipment_id],
            committed=committed.get((line_id, shipment_id), 0),
        )
        for (line_id, shipment_id), quantity in sorted(shipped.items())
    ]
    return OrderState(lines, parcels)


def eligibility(state: OrderState, now: datetime, window: int) -> dict[int, LineEligibility]:
    return {
        line.id or 0: line_eligibility(line.id or 0, line.quantity, state.parcels, now, window)
        for line in state.lines
    }


async def move_return(
    session: AsyncSession, ret: ReturnRequest, new: ReturnStatus, **values: object
) -> None:
    """The return's status change (compare-and-set: a change that raced us is refused)."""
    await change_status(session, ret, new, noun="return", field="rma", **values)


async def move_order(session: AsyncSession, order: Order, new: OrderStatus) -> None:
    await change_status(session, order, new, noun="order", field="rma")


async def return_rows(
    session: AsyncSession, ret: ReturnRequest
) -> list[tuple[ReturnLine, OrderLine]]:
    return [
        (row, line)
        for row, line in (
            await session.execute(
                select(ReturnLine, OrderLine)
                .join(OrderLine, col(OrderLine.id) == col(ReturnLine.order_line_id))
                .where(col(ReturnLine.return_id) == ret.id)
                .order_by(col(ReturnLine.id))
            )
        ).all()
    ]


async def ordered_units(session: AsyncSession, order: Order) -> int:
    total = (
        await session.execute(
            select(func.coalesce(func.sum(col(OrderLine.quantity)), 0)).where(
                col(OrderLine.order_id) == order.id
            )
        )
    ).scalar_one()
    return int(total)


async def units_refunded(session: AsyncSession, order: Order) -> int:
    """Units of returns refunded, or whose refund is on its way."""
    in_flight = select(col(PaymentRefund.return_id)).where(
        col(PaymentRefund.order_id) == order.id,
        col(PaymentRefund.status) == RefundStatus.PENDING.value,
    )
    total = (
        await session.execute(
            select(func.coalesce(func.sum(col(ReturnLine.received_quantity)), 0))
            .join(ReturnRequest, col(ReturnRequest.id) == col(ReturnLine.return_id))
            .where(
                col(ReturnRequest.order_id) == order.id,
                or_(
                    col(ReturnRequest.status) == ReturnStatus.REFUNDED.value,
                    col(ReturnRequest.id).in_(in_flight),
                ),
            )
        )
    ).scalar_one()
    return int(total or 0)  # coalesce: never NULL (typed after the nullable column)


async def owner_email(session: AsyncSession, order: Order) -> str:
    return str(
        (
            await session.execute(select(col(User.email)).where(col(User.id) == order.user_id))
        ).scalar_one()
    )


def queue_email(
    uow: UnitOfWork, kind: str, view: ReturnView, order: Order, recipient: str, window_days: int
) -> None:
    """The customer's email about this return, queued in the unit of work."""
    ret = view.request
    subject, body = templates.render(
        kind,
        {
            "code": codes.display(order.code),
            "rma": codes.display(ret.rma_code),
            "name": order.ship_name,
            "lines": [
                {
                    "sku": line.sku,
                    "name": line.name,
                    "quantity": line.quantity,
                    "received_quantity": line.received_quantity,
                }
                for line in view.lines
            ],
            "reason": ret.reason,
            "rejection_reason": ret.rejection_reason or "",
            "window_days": window_days,
            "return_address": RETURN_ADDRESS,
            "refund_minor": ret.refund_minor or 0,
            "currency": ret.currency,
        },
    )
    uow.email(
        kind=kind,
        recipient=recipient,
        subject=subject,
        body_text=body,
        dedupe_key=f"{kind.replace('_', '-')}.{ret.rma_code}",
    )
