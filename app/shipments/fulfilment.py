"""What every fulfilment use case shares: its dependencies, the door declarations, finding
the order behind a code inside a transaction, the per-line counts, and the order's status
change (the compare-and-set of app/status_change.py).

Who may do what (DESIGN §3): WAREHOUSE and ADMIN run fulfilment; SUPPORT may read the queue
and pick lists. The doors are declared here once (app/security/doors.py does the gate, the
role check before any read, and the failure accounting and audit of a miss).

Every change locks the order row (SELECT ... FOR UPDATE on PostgreSQL; SQLite writers are
serialised by BEGIN IMMEDIATE), so two scanners or a scan and a cancellation cannot both
win, and a unit is never packed or shipped twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.audit.service import AuditLog
from app.catalog.models import Product
from app.db import Database
from app.errors import BadUserInput, Conflict
from app.orders.models import Order, OrderLine, OrderStatus
from app.pagination import CursorCodec
from app.security.doors import Doors, NoMatch, Subject, Who, declare
from app.security.policy import FULFILMENT_ROLES
from app.security.roles import Role
from app.shipments.inputs import LineRequest
from app.shipments.models import PackLine, Shipment, ShipmentLine
from app.shipments.results import Counts, PickLine, bin_order
from app.status_change import change_status
from app.unit_of_work import UnitsOfWork

# DESIGN §3 "fulfilment": support may read (queue, pick list), not act.
FULFILMENT_READ_ROLES = (Role.WAREHOUSE, Role.SUPPORT, Role.ADMIN)

PICK_LIST = declare("pickList", Who.STAFF, Subject.ORDER, *FULFILMENT_READ_ROLES, audit="pick_list")
PACK_ORDER = declare("packOrder", Who.STAFF, Subject.ORDER, *FULFILMENT_ROLES, audit="pack_order")
SHIP_ORDER = declare("shipOrder", Who.STAFF, Subject.ORDER, *FULFILMENT_ROLES, audit="ship_order")
ADD_TRACKING_EVENT = declare(
    "addTrackingEvent", Who.STAFF, Subject.ORDER, *FULFILMENT_ROLES, audit="add_tracking_event"
)


@dataclass(frozen=True)
class Fulfilment:
    """The dependencies of the fulfilment use cases (built once by ShipmentService)."""

    db: Database
    units: UnitsOfWork
    doors: Doors
    audit: AuditLog
    cursors: CursorCodec
    max_page_size: int
    return_window_days: int


async def find_order(session: AsyncSession, code: str, *, lock: bool) -> Order:
    """The order behind a code, for staff with the role, or `NoMatch` (counted and audited
    by the door once this transaction has ended)."""
    query = select(Order).where(col(Order.code) == code)
    if lock:
        query = query.with_for_update()
    order: Order | None = (await session.execute(query)).scalar_one_or_none()
    if order is None:
        raise NoMatch()
    return order


async def pick_lines(session: AsyncSession, order_ids: list[int]) -> dict[int, list[PickLine]]:
    """Per order, its lines with bin, ordered, packed and shipped units, in bin order."""
    packed = (
        select(func.coalesce(func.sum(col(PackLine.quantity)), 0))
        .where(col(PackLine.order_line_id) == col(OrderLine.id))
        .correlate(OrderLine)
        .scalar_subquery()
    )
    shipped = (
        select(func.coalesce(func.sum(col(ShipmentLine.quantity)), 0))
        .where(col(ShipmentLine.order_line_id) == col(OrderLine.id))
        .correlate(OrderLine)
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(OrderLine, col(Product.bin_location), packed, shipped)
            .join(Product, col(Product.id) == col(OrderLine.product_id))
            .where(col(OrderLine.order_id).in_(order_ids))
        )
    ).all()
    result: dict[int, list[PickLine]] = {order_id: [] for order_id in order_ids}
    for line, bin_location, packed_qty, shipped_qty in rows:
        result[line.order_id].append(
            PickLine(
                order_line_id=line.id,
                sku=line.sku,
                name=line.name,
                bin_location=bin_location or "",
                ordered=line.quantity,
                packed=int(packed_qty),
                shipped=int(shipped_qty),
            )
        )
    for lines in result.values():
        lines.sort(key=bin_order)
    return result


async def counts(session: AsyncSession, order: Order) -> Counts:
    assert order.id is not None
    shipments = list(
        (
            await session.execute(
                select(Shipment)
                .where(col(Shipment.order_id) == order.id)
                .order_by(col(Shipment.id))
            )
        ).scalars()
    )
    return Counts((await pick_lines(session, [order.id]))[order.id], shipments)


def requested(
    lines: list[PickLine],
    requests: list[LineRequest] | None,
    available: Callable[[PickLine], int],
    nothing: str,
) -> dict[int, int]:
    """{order line id: units} for this step: the named lines, or every unit available.
    `available` says how many units of a line may take this step."""
    if requests is None:
        wanted = {line.order_line_id: available(line) for line in lines if available(line) > 0}
        if not wanted:
            raise Conflict(nothing, field="code")
        return wanted
    by_sku = {line.sku.upper(): line for line in lines}
    wanted = {}
    for index, request in enumerate(requests):
        line = by_sku.get(request.sku)
        if line is None:
            raise BadUserInput("This order has no line with this SKU.", field=f"lines[{index}].sku")
        limit = available(line)
        quantity = request.quantity if request.quantity is not None else limit
        total = wanted.get(line.order_line_id, 0) + quantity
        if quantity < 1 or total > limit:
            raise BadUserInput(
                f"Only {limit} of {line.sku} can be handled now.",
                field=f"lines[{index}].quantity",
                details={"sku": line.sku, "available": limit},
            )
        wanted[line.order_line_id] = total
    return wanted


async def move_order(
    session: AsyncSession, order: Order, new_status: OrderStatus, **values: object
) -> None:
    """The order's status change (compare-and-set: a change that raced us is refused)."""
    await change_status(session, order, new_status, noun="order", field="code", **values)
