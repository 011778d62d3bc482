"""Fulfilment and tracking use cases: the queue, pick lists, packing by scan, shipping,
tracking events (staff by hand, carriers through the signed webhook). The only place
that commits fulfilment changes.

Who may do what (DESIGN §3): WAREHOUSE and ADMIN run fulfilment; SUPPORT may read the
queue and pick lists. Every door that takes an order code first goes through
`CodeLookups.begin` (authenticated, charged to the limiter once, code normalised), then the
role is checked: a caller without the role gets FORBIDDEN whatever the code, so the answer
never depends on whether the order exists. Only a caller with the role learns
ORDER_NOT_FOUND (which counts as a failed lookup, like everywhere else).

Every change locks the order row (SELECT ... FOR UPDATE on PostgreSQL; SQLite writers are
serialised by BEGIN IMMEDIATE), so two scanners or a scan and a cancellation cannot both
win, and a unit is never packed or shipped twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from app.accounts.models import User
from app.audit.service import AuditLog
from app.catalog.models import Product
from app.db import Database, as_models, utcnow
from app.errors import BadUserInput, Conflict, Forbidden, OrderNotFound
from app.events.broker import Broker, order_topic
from app.metrics import delivery_counted
from app.notifications import templates
from app.notifications.models import OutboxEmail
from app.notifications.outbox import enqueue_email
from app.notifications.preferences import milestone_emails_wanted
from app.orders.models import Order, OrderLine, OrderStatus
from app.orders.pricing import add_business_days
from app.orders.service import address_lines
from app.pagination import CursorCodec, clamp_page_size
from app.returns.rules import order_status_with_returns
from app.returns.service import returned_units
from app.security import codes
from app.security.lookups import CodeLookups
from app.security.policy import FULFILMENT_ROLES, Viewer, require_role
from app.security.roles import Role
from app.shipments.inputs import (
    CleanEvent,
    EventInput,
    LineRequest,
    clean_carrier,
    clean_event,
    clean_line_requests,
    clean_scan,
    clean_tracking_number,
)
from app.shipments.models import (
    EventSource,
    Pack,
    PackLine,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
    TrackingEvent,
)
from app.shipments.transitions import (
    IllegalTransition,
    Progress,
    Step,
    check_allowed,
    order_estimate,
    order_status_after,
    shipment_status_after,
)
from app.tracking import places

log = logging.getLogger("app.shipments")

# The batch reads behind the API's loaders (every order and parcel of a page in one
# statement each), prebuilt and run straight through the driver (Database.fetch_all).
_SHIPMENT = Shipment.__table__
_EVENT = TrackingEvent.__table__
_SHIPMENTS_OF_ORDERS = (
    select(*_SHIPMENT.columns)
    .where(_SHIPMENT.c.order_id.in_(bindparam("ids", expanding=True)))
    .order_by(_SHIPMENT.c.shipped_at, _SHIPMENT.c.id)
)
_EVENTS_OF_SHIPMENTS = (
    select(*_EVENT.columns)
    .where(_EVENT.c.shipment_id.in_(bindparam("ids", expanding=True)))
    .order_by(_EVENT.c.occurred_at.desc(), _EVENT.c.id.desc())
)
_LINES_OF_SHIPMENTS = (
    select(
        ShipmentLine.__table__.c.shipment_id,
        OrderLine.__table__.c.sku,
        OrderLine.__table__.c.name,
        ShipmentLine.__table__.c.quantity,
    )
    .join(
        OrderLine.__table__,
        OrderLine.__table__.c.id == ShipmentLine.__table__.c.order_line_id,
    )
    .where(ShipmentLine.__table__.c.shipment_id.in_(bindparam("ids", expanding=True)))
    .order_by(ShipmentLine.__table__.c.id)
)

# The email each milestone of a parcel sends (app/notifications/templates/<kind>.*).
MILESTONE_EMAILS: dict[ShipmentStatus, str] = {
    ShipmentStatus.OUT_FOR_DELIVERY: "shipment_out_for_delivery",
    ShipmentStatus.DELAYED: "shipment_delayed",
    ShipmentStatus.ATTEMPTED_DELIVERY: "shipment_attempted",
    ShipmentStatus.EXCEPTION: "shipment_exception",
    ShipmentStatus.DELIVERED: "shipment_delivered",
}

# DESIGN §3 "fulfilment": support may read (queue, pick list), not act.
FULFILMENT_READ_ROLES = (Role.WAREHOUSE, Role.SUPPORT, Role.ADMIN)
# Orders with units still to pick (PARTIALLY_SHIPPED ones only while something is unpacked).
PICKABLE = (OrderStatus.PLACED, OrderStatus.PROCESSING, OrderStatus.PARTIALLY_SHIPPED)


@dataclass(frozen=True)
class PickLine:
    """One order line as the warehouse sees it: where it is and how far it got."""

    order_line_id: int
    sku: str
    name: str
    bin_location: str
    ordered: int
    packed: int
    shipped: int

    @property
    def to_pick(self) -> int:
        return self.ordered - self.packed

    @property
    def ready_to_ship(self) -> int:
        return self.packed - self.shipped


def bin_order(line: PickLine) -> tuple[bool, str, str]:
    """Walk the aisles once: by bin location (A-01-03 < A-02-07 < B-…), unknown bins last."""
    return (line.bin_location == "", line.bin_location, line.sku)


@dataclass(frozen=True)
class ItemCount:
    sku: str
    quantity: int


class ScanMismatch(BadUserInput):
    """The scan is not exactly what is being packed. Nothing is recorded."""

    def __init__(self, missing: list[ItemCount], unexpected: list[ItemCount]) -> None:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(f"{i.quantity} x {i.sku}" for i in missing))
        if unexpected:
            parts.append(
                "not in this parcel " + ", ".join(f"{i.quantity} x {i.sku}" for i in unexpected)
            )
        super().__init__(
            "The scan does not match the items to pack (" + "; ".join(parts) + "). "
            "Nothing was packed: fix the parcel and scan it again.",
            field="scannedSkus",
        )
        self.missing = missing
        self.unexpected = unexpected


@dataclass(frozen=True)
class PackResult:
    order: Order
    packed: list[ItemCount]


@dataclass(frozen=True)
class ShipResult:
    order: Order
    shipment: Shipment


@dataclass(frozen=True)
class EventResult:
    order: Order
    shipment: Shipment
    recorded: bool  # False: this event id was recorded before (idempotent repeat)


@dataclass(frozen=True)
class _Applied:
    """What one tracking event did: recorded (not a repeat), and whether it delivered the
    parcel on time (True), late (False) or did not deliver it (None)."""

    recorded: bool
    delivered_on_time: bool | None = None


class CarrierOutcome(StrEnum):
    RECORDED = "RECORDED"
    DUPLICATE = "DUPLICATE"
    UNKNOWN_SHIPMENT = "UNKNOWN_SHIPMENT"


@dataclass(frozen=True)
class QueuePage:
    orders: list[Order]
    cursors: list[str]
    has_next_page: bool


@dataclass(frozen=True)
class ShippedLine:
    sku: str
    name: str
    quantity: int


@dataclass
class _Counts:
    lines: list[PickLine]
    shipments: list[Shipment] = field(default_factory=list)

    def progress(self) -> Progress:
        return Progress(
            ordered=sum(line.ordered for line in self.lines),
            packed=sum(line.packed for line in self.lines),
            shipped=sum(line.shipped for line in self.lines),
            shipments=len(self.shipments),
            delivered_shipments=sum(
                1 for s in self.shipments if s.status == ShipmentStatus.DELIVERED.value
            ),
        )


class _UnknownCode(Exception):
    """No order has this code: raised inside the lookup's transaction, turned into
    ORDER_NOT_FOUND (with the failure accounted) once the transaction has ended."""


def tracking_fingerprint(carrier: str, tracking_number: str) -> str:
    """For logs: which tracking number, without writing it down."""
    return hashlib.sha256(f"{carrier}:{tracking_number}".encode()).hexdigest()[:12]


class ShipmentService:
    def __init__(
        self,
        db: Database,
        lookups: CodeLookups,
        cursors: CursorCodec,
        events: Broker,
        *,
        max_page_size: int,
        audit: AuditLog | None = None,
        return_window_days: int = 30,
    ) -> None:
        self._db = db
        self._return_window_days = return_window_days
        self._lookups = lookups
        self._cursors = cursors
        self._events = events
        self._max_page_size = max_page_size
        self._audit = audit or AuditLog(db, cursors, max_page_size)

    # -- the door ---------------------------------------------------------------------
    async def _door(
        self, viewer: Viewer | None, raw_code: str, client_ip: str, roles: tuple[Role, ...]
    ) -> tuple[Viewer, str]:
        """The one gate first (UNAUTHENTICATED / RATE_LIMITED / INVALID_ORDER_CODE, charged
        once), then the role: FORBIDDEN before any database access, the same answer for a
        real and an unknown code."""
        who, code = await self._lookups.begin(viewer, raw_code, client_ip, staff_roles=roles)
        if who.role not in roles:
            raise Forbidden()
        return who, code

    @contextlib.asynccontextmanager
    async def _misses_counted(
        self, who: Viewer, code: str, client_ip: str, door: str
    ) -> AsyncIterator[None]:
        """Around a transaction that looks the code up with `_find`: a code that matches
        nothing is a failed lookup, audited in a transaction of its own, then
        ORDER_NOT_FOUND. Entered before `write()`/`read()`, so that the lookup's transaction
        has ended (rolled back) before the limiter and the audit log are called."""
        try:
            yield
        except _UnknownCode:
            await self._lookups.failed(who, client_ip, staff=True)
            await self._audit.record(
                actor=who, action=door, outcome="not_found", code=code, client_ip=client_ip
            )
            raise OrderNotFound() from None

    @staticmethod
    async def _find(session: AsyncSession, code: str, *, lock: bool) -> Order:
        """The order behind a code, for staff with the role, or `_UnknownCode` (accounted
        for by `_misses_counted` once this transaction has ended). Audited: a code that
        matches nothing by `_misses_counted` (own transaction); reads by the door after the
        read, changes by the use case inside its transaction (so an entry exists exactly when
        the change does)."""
        query = select(Order).where(col(Order.code) == code)
        if lock:
            query = query.with_for_update()
        order: Order | None = (await session.execute(query)).scalar_one_or_none()
        if order is None:
            raise _UnknownCode()
        return order

    def _publish(self, order: Order, kind: str) -> None:
        """Tell live subscribers (orderUpdates) after the commit; they re-read the order."""
        assert order.id is not None
        self._events.publish(order_topic(order.id), {"type": kind, "status": order.status})

    # -- reads --------------------------------------------------------------------------
    async def fulfillment_queue(
        self, viewer: Viewer | None, first: int | None, after: str | None
    ) -> QueuePage:
        """Orders with units still to pick, oldest first (keyset on placed_at, code)."""
        who = require_role(viewer, *FULFILMENT_READ_ROLES)
        await self._audit.record(actor=who, action="fulfillment_queue", outcome="listed")
        size = clamp_page_size(first, self._max_page_size)
        ordered = (
            select(func.coalesce(func.sum(OrderLine.quantity), 0))
            .where(col(OrderLine.order_id) == Order.id)
            .correlate(Order)
            .scalar_subquery()
        )
        packed = (
            select(func.coalesce(func.sum(PackLine.quantity), 0))
            .join(OrderLine, col(OrderLine.id) == PackLine.order_line_id)
            .where(col(OrderLine.order_id) == Order.id)
            .correlate(Order)
            .scalar_subquery()
        )
        query = select(Order).where(
            col(Order.status).in_([s.value for s in PICKABLE]), ordered > packed
        )
        if after:
            placed_iso, last_code = self._cursors.decode("queue", after)
            placed = datetime.fromisoformat(str(placed_iso))
            query = query.where(
                or_(
                    col(Order.placed_at) > placed,
                    and_(col(Order.placed_at) == placed, col(Order.code) > str(last_code)),
                )
            )
        query = query.order_by(col(Order.placed_at).asc(), col(Order.code).asc()).limit(size + 1)
        async with self._db.read() as session:
            rows = list((await session.execute(query)).scalars())
        page = rows[:size]
        return QueuePage(
            orders=page,
            cursors=[
                self._cursors.encode("queue", [o.placed_at.isoformat(), o.code]) for o in page
            ],
            has_next_page=len(rows) > size,
        )

    async def pick_list(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> Order:
        """The order to pick; its lines (sorted by bin) are loaded by the API in one batch."""
        who, code = await self._door(viewer, raw_code, client_ip, FULFILMENT_READ_ROLES)
        async with (
            self._misses_counted(who, code, client_ip, "pick_list"),
            self._db.read() as session,
        ):
            order = await self._find(session, code, lock=False)
        await self._audit.record(
            actor=who,
            action="pick_list",
            outcome="found",
            order_id=order.id,
            code=order.code,
            client_ip=client_ip,
        )
        return order

    # -- batch loaders (one statement for any number of keys) ---------------------------
    async def pick_lines_for_orders(self, order_ids: list[int]) -> dict[int, list[PickLine]]:
        async with self._db.read() as session:
            return await self._pick_lines(session, order_ids)

    @staticmethod
    async def _pick_lines(session: AsyncSession, order_ids: list[int]) -> dict[int, list[PickLine]]:
        packed = (
            select(func.coalesce(func.sum(PackLine.quantity), 0))
            .where(col(PackLine.order_line_id) == OrderLine.id)
            .correlate(OrderLine)
            .scalar_subquery()
        )
        shipped = (
            select(func.coalesce(func.sum(ShipmentLine.quantity), 0))
            .where(col(ShipmentLine.order_line_id) == OrderLine.id)
            .correlate(OrderLine)
            .scalar_subquery()
        )
        rows = (
            await session.execute(
                select(OrderLine, Product.bin_location, packed, shipped)
                .join(Product, col(Product.id) == OrderLine.product_id)
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

    async def shipments_for_orders(self, order_ids: list[int]) -> dict[int, list[Shipment]]:
        result: dict[int, list[Shipment]] = {order_id: [] for order_id in order_ids}
        rows = await self._db.fetch_all(_SHIPMENTS_OF_ORDERS, {"ids": order_ids})
        for row in as_models(Shipment, _SHIPMENTS_OF_ORDERS, rows):
            result[row.order_id].append(row)
        return result

    async def events_for_shipments(self, shipment_ids: list[int]) -> dict[int, list[TrackingEvent]]:
        """Newest first (by when it happened, then by when we heard of it)."""
        result: dict[int, list[TrackingEvent]] = {shipment_id: [] for shipment_id in shipment_ids}
        rows = await self._db.fetch_all(_EVENTS_OF_SHIPMENTS, {"ids": shipment_ids})
        for row in as_models(TrackingEvent, _EVENTS_OF_SHIPMENTS, rows):
            result[row.shipment_id].append(row)
        return result

    async def lines_for_shipments(self, shipment_ids: list[int]) -> dict[int, list[ShippedLine]]:
        result: dict[int, list[ShippedLine]] = {shipment_id: [] for shipment_id in shipment_ids}
        rows = await self._db.fetch_all(_LINES_OF_SHIPMENTS, {"ids": shipment_ids})
        for shipment_id, sku, name, quantity in rows:
            result[shipment_id].append(ShippedLine(sku, name, quantity))
        return result

    # -- changes ------------------------------------------------------------------------
    async def _counts(self, session: AsyncSession, order: Order) -> _Counts:
        assert order.id is not None
        shipments = list(
            (
                await session.execute(
                    select(Shipment).where(col(Shipment.order_id) == order.id).order_by(Shipment.id)
                )
            ).scalars()
        )
        return _Counts((await self._pick_lines(session, [order.id]))[order.id], shipments)

    @staticmethod
    def _requested(
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
                raise BadUserInput(
                    "This order has no line with this SKU.", field=f"lines[{index}].sku"
                )
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

    async def _move_order(
        self, session: AsyncSession, order: Order, new_status: OrderStatus, **values: object
    ) -> None:
        """Compare-and-set on the status: a change that raced us is refused, not lost."""
        changed = await session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status) == order.status)
            .values(status=new_status.value, updated_at=utcnow(), **values)
        )
        if changed.rowcount != 1:
            raise Conflict("The order changed meanwhile; try again.", field="code")
        # Mirror the change on the loaded row without making it dirty (no second UPDATE).
        for key, value in {"status": new_status.value, **values}.items():
            set_committed_value(order, key, value)

    async def pack_order(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        scanned_skus: list[str],
        lines: list[LineRequest] | None = None,
    ) -> PackResult:
        """Record a packed parcel if, and only if, the scan is exactly the units being packed
        (the named `lines`, or everything still to pick). Otherwise ScanMismatch lists the
        difference and nothing is recorded."""
        who, code = await self._door(viewer, raw_code, client_ip, FULFILMENT_ROLES)
        requests = clean_line_requests(lines)
        scanned = clean_scan(scanned_skus)
        async with (
            self._misses_counted(who, code, client_ip, "pack_order"),
            self._db.write() as session,
        ):
            order = await self._find(session, code, lock=True)
            current = OrderStatus(order.status)
            check_allowed(current, Step.PACK)
            counts = await self._counts(session, order)
            wanted = self._requested(
                counts.lines,
                requests,
                lambda line: line.to_pick,
                "Every item of this order is packed already.",
            )
            by_id = {line.order_line_id: line for line in counts.lines}
            expected: Counter[str] = Counter()
            for line_id, quantity in wanted.items():
                expected[by_id[line_id].sku.upper()] += quantity
            missing = expected - scanned
            unexpected = scanned - expected
            if missing or unexpected:
                raise ScanMismatch(
                    [ItemCount(sku, n) for sku, n in sorted(missing.items())],
                    [ItemCount(sku, n) for sku, n in sorted(unexpected.items())],
                )
            pack = Pack(order_id=order.id or 0, packed_by=who.user_id, packed_at=utcnow())
            session.add(pack)
            await session.flush()
            for line_id, quantity in wanted.items():
                session.add(
                    PackLine(pack_id=pack.id or 0, order_line_id=line_id, quantity=quantity)
                )
            before = counts.progress()
            after = Progress(
                ordered=before.ordered,
                packed=before.packed + sum(wanted.values()),
                shipped=before.shipped,
                shipments=before.shipments,
                delivered_shipments=before.delivered_shipments,
            )
            new_status = order_status_after(current, Step.PACK, after)
            await self._move_order(session, order, new_status)
            await self._audit.record(
                actor=who,
                action="pack_order",
                outcome="packed",
                order_id=order.id,
                code=order.code,
                reason=", ".join(f"{n} x {by_id[i].sku}" for i, n in wanted.items()),
                client_ip=client_ip,
                session=session,
            )
            await session.commit()
        log.info(
            "order packed",
            extra={"code": codes.mask(order.code), "status": order.status, "user": who.public_id},
        )
        if new_status is not current:
            self._publish(order, "STATUS_CHANGED")
        packed = [ItemCount(by_id[i].sku, n) for i, n in wanted.items()]
        return PackResult(order, sorted(packed, key=lambda item: item.sku))

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
        who, code = await self._door(viewer, raw_code, client_ip, FULFILMENT_ROLES)
        carrier = clean_carrier(carrier)
        tracking = clean_tracking_number(tracking_number)
        requests = clean_line_requests(lines)
        today = utcnow().date()
        if estimated_delivery is not None and estimated_delivery < today:
            raise BadUserInput(
                "The estimated delivery cannot be in the past.", field="estimatedDelivery"
            )
        try:
            async with (
                self._misses_counted(who, code, client_ip, "ship_order"),
                self._db.write() as session,
            ):
                order = await self._find(session, code, lock=True)
                current = OrderStatus(order.status)
                check_allowed(current, Step.SHIP)
                counts = await self._counts(session, order)
                wanted = self._requested(
                    counts.lines,
                    requests,
                    lambda line: line.ready_to_ship,
                    "Nothing packed is waiting to ship: pack the items (packOrder) first.",
                )
                taken = (
                    await session.execute(
                        select(Shipment.id).where(
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
                before = counts.progress()
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
                    for s in [*counts.shipments, shipment]
                    if s.status != ShipmentStatus.DELIVERED.value and s.estimated_delivery
                ]
                await self._move_order(
                    session,
                    order,
                    new_status,
                    estimated_delivery=order_estimate(
                        order.estimated_delivery, pending, after.shipped >= after.ordered
                    ),
                )
                by_id = {line.order_line_id: line for line in counts.lines}
                await self._queue_shipping_email(
                    session,
                    order,
                    shipment,
                    [ShippedLine(by_id[i].sku, by_id[i].name, n) for i, n in wanted.items()],
                    partial=new_status is OrderStatus.PARTIALLY_SHIPPED,
                )
                await self._audit.record(
                    actor=who,
                    action="ship_order",
                    outcome="shipped",
                    order_id=order.id,
                    code=order.code,
                    reason=f"{carrier}, {sum(wanted.values())} unit(s)",
                    client_ip=client_ip,
                    session=session,
                )
                await session.commit()
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
        self._publish(order, "STATUS_CHANGED")
        return ShipResult(order, shipment)

    async def _queue_shipping_email(
        self,
        session: AsyncSession,
        order: Order,
        shipment: Shipment,
        lines: list[ShippedLine],
        *,
        partial: bool,
    ) -> None:
        recipient = (
            await session.execute(select(User.email).where(col(User.id) == order.user_id))
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
        enqueue_email(
            session,
            kind="order_shipped",
            recipient=recipient,
            subject=subject,
            body_text=body,
            dedupe_key=f"order-shipped.{shipment.id}",
        )

    async def _queue_milestone_email(
        self, session: AsyncSession, order: Order, shipment: Shipment, event: CleanEvent
    ) -> None:
        """The milestone email of this event, at most one per milestone and parcel, and only
        for a customer who has not switched milestone emails off. Called before the event
        moves the shipment on (so the estimate it had is still the old one)."""
        kind = MILESTONE_EMAILS.get(event.status)
        if kind is None:
            return
        dedupe_key = f"{kind.replace('_', '-')}.{shipment.id}"
        sent = (
            await session.execute(
                select(OutboxEmail.id).where(col(OutboxEmail.dedupe_key) == dedupe_key)
            )
        ).first()
        if sent is not None or not await milestone_emails_wanted(session, order.user_id):
            return
        email, public_id = (
            await session.execute(
                select(User.email, User.public_id).where(col(User.id) == order.user_id)
            )
        ).one()
        occurred = event.occurred_at.astimezone(UTC).date()
        old_estimate = shipment.estimated_delivery or order.estimated_delivery
        data: dict[str, object] = {
            "code": codes.display(order.code),
            "name": order.ship_name,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "town": event.town,
            "unsubscribe_user": public_id,
        }
        if event.status is ShipmentStatus.DELAYED:
            data["old_estimate"] = old_estimate.isoformat()
            new = event.estimated_delivery
            data["new_estimate"] = new.isoformat() if new is not None else None
        elif event.status is ShipmentStatus.DELIVERED:
            data["delivered_on"] = occurred.isoformat()
            data["return_until"] = (occurred + timedelta(days=self._return_window_days)).isoformat()
            data["address_lines"] = address_lines(order)
        subject, body = templates.render(kind, data)
        enqueue_email(
            session,
            kind=kind,
            recipient=email,
            subject=subject,
            body_text=body,
            dedupe_key=dedupe_key,
        )

    # -- tracking events ----------------------------------------------------------------
    async def add_tracking_event(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        carrier: str,
        tracking_number: str,
        event: EventInput,
    ) -> EventResult:
        """Staff record an event by hand: the same rules as the carrier webhook. Without an
        event id, one is made up (so the call is not idempotent; pass one to make it so)."""
        who, code = await self._door(viewer, raw_code, client_ip, FULFILMENT_ROLES)
        carrier = clean_carrier(carrier)
        tracking = clean_tracking_number(tracking_number)
        await places.load()
        now = utcnow()
        clean = clean_event(event, now=now, default_event_id=f"staff-{uuid.uuid4().hex}")
        async with (
            self._misses_counted(who, code, client_ip, "add_tracking_event"),
            self._db.write() as session,
        ):
            order = await self._find(session, code, lock=True)
            shipment = (
                await session.execute(
                    select(Shipment).where(
                        col(Shipment.order_id) == order.id,
                        col(Shipment.carrier) == carrier,
                        col(Shipment.tracking_number) == tracking,
                    )
                )
            ).scalar_one_or_none()
            if shipment is None:
                raise BadUserInput(
                    "This order has no shipment with this carrier and tracking number.",
                    field="trackingNumber",
                )
            applied = await self._apply_event(
                session, order, shipment, clean, EventSource.STAFF, who
            )
            recorded = applied.recorded
            await self._audit.record(
                actor=who,
                action="add_tracking_event",
                outcome="recorded" if recorded else "duplicate",
                order_id=order.id,
                code=order.code,
                reason=f"{carrier} {clean.status.value}",
                client_ip=client_ip,
                session=session,
            )
            await session.commit()
        if recorded:
            self._after_event(order, shipment, applied)
        return EventResult(order, shipment, recorded)

    async def record_carrier_event(
        self, carrier: str, tracking_number: str, event: EventInput
    ) -> CarrierOutcome:
        """An event from the (already authenticated) carrier webhook. The caller answers
        every outcome the same way, so whether a tracking number exists is never told."""
        carrier = clean_carrier(carrier)
        tracking = clean_tracking_number(tracking_number)
        await places.load()
        clean = clean_event(event, now=utcnow(), default_event_id=None)
        try:
            async with self._db.write() as session:
                shipment = (
                    await session.execute(
                        select(Shipment).where(
                            col(Shipment.carrier) == carrier,
                            col(Shipment.tracking_number) == tracking,
                        )
                    )
                ).scalar_one_or_none()
                if shipment is None:
                    log.warning(
                        "carrier event for an unknown shipment",
                        extra={
                            "carrier": carrier,
                            "tracking": tracking_fingerprint(carrier, tracking),
                        },
                    )
                    return CarrierOutcome.UNKNOWN_SHIPMENT
                order = (
                    await session.execute(
                        select(Order).where(col(Order.id) == shipment.order_id).with_for_update()
                    )
                ).scalar_one()
                await session.refresh(shipment)  # as of the lock
                applied = await self._apply_event(
                    session, order, shipment, clean, EventSource.CARRIER, None
                )
                await session.commit()
        except IntegrityError:
            return CarrierOutcome.DUPLICATE  # the same event delivered twice at once
        if not applied.recorded:
            return CarrierOutcome.DUPLICATE
        self._after_event(order, shipment, applied)
        return CarrierOutcome.RECORDED

    def _after_event(self, order: Order, shipment: Shipment, applied: _Applied) -> None:
        """After the commit: count a delivery against the promise, tell live subscribers
        (the subscription adds STATUS_CHANGED when the order's status moved)."""
        if applied.delivered_on_time is not None:
            delivery_counted(shipment.carrier, on_time=applied.delivered_on_time)
        self._publish(order, "TRACKING_EVENT")

    async def _apply_event(
        self,
        session: AsyncSession,
        order: Order,
        shipment: Shipment,
        event: CleanEvent,
        source: EventSource,
        by: Viewer | None,
    ) -> _Applied:
        """Record the event once (per carrier event id) and move shipment and order on."""
        seen = (
            await session.execute(
                select(TrackingEvent.id).where(
                    col(TrackingEvent.carrier) == shipment.carrier,
                    col(TrackingEvent.carrier_event_id) == event.event_id,
                )
            )
        ).first()
        if seen is not None:
            return _Applied(recorded=False)
        now = utcnow()
        session.add(
            TrackingEvent(
                shipment_id=shipment.id or 0,
                carrier=shipment.carrier,
                carrier_event_id=event.event_id,
                status=event.status.value,
                location=event.location,
                town=event.town,
                description=event.description,
                occurred_at=event.occurred_at,
                received_at=now,
                source=source.value,
                recorded_by=by.user_id if by is not None else None,
            )
        )
        before = ShipmentStatus(shipment.status)
        after = shipment_status_after(
            before, shipment.last_event_at, event.status, event.occurred_at
        )
        newest = shipment.last_event_at is None or event.occurred_at >= shipment.last_event_at
        if (
            before is not ShipmentStatus.DELIVERED
            and after is event.status
            and (newest or after is ShipmentStatus.DELIVERED)
        ):
            # The event is the shipment's state now (not an older one arriving late).
            await self._queue_milestone_email(session, order, shipment, event)
        shipment.status = after.value
        if shipment.last_event_at is None or event.occurred_at > shipment.last_event_at:
            shipment.last_event_at = event.occurred_at
        if event.estimated_delivery is not None and after is not ShipmentStatus.DELIVERED:
            shipment.estimated_delivery = event.estimated_delivery
        delivered_on_time: bool | None = None
        if after is ShipmentStatus.DELIVERED and shipment.delivered_at is None:
            # The carrier's time of the delivery, compared with the date promised at checkout
            shipment.delivered_at = event.occurred_at
            promise = order.promised_delivery or order.estimated_delivery
            delivered_on_time = event.occurred_at.astimezone(UTC).date() <= promise
        shipment.updated_at = now
        session.add(shipment)
        await session.flush()

        counts = await self._counts(session, order)
        progress = counts.progress()
        current = OrderStatus(order.status)
        new_status = current
        delivered_at: dict[str, datetime] = {}
        if before is not ShipmentStatus.DELIVERED and after is ShipmentStatus.DELIVERED:
            try:
                new_status = order_status_after(current, Step.DELIVER, progress)
                if new_status is OrderStatus.DELIVERED and order.delivered_at is None:
                    # every parcel is delivered: the order arrived with its last one
                    delivered_at["delivered_at"] = max(
                        s.delivered_at for s in counts.shipments if s.delivered_at is not None
                    )
                # Units returned from parcels that arrived earlier keep counting.
                returned = await returned_units(session, order.id or 0)
                new_status = order_status_with_returns(new_status, progress.ordered, returned)
            except IllegalTransition:
                # A carrier's delivery is a fact: keep it on the shipment, leave the order.
                log.warning(
                    "delivery for an order that cannot be delivered",
                    extra={"code": codes.mask(order.code), "status": order.status},
                )
        pending = [
            s.estimated_delivery
            for s in counts.shipments
            if s.status != ShipmentStatus.DELIVERED.value and s.estimated_delivery
        ]
        await self._move_order(
            session,
            order,
            new_status,
            estimated_delivery=order_estimate(
                order.estimated_delivery, pending, progress.shipped >= progress.ordered
            ),
            **delivered_at,
        )
        return _Applied(recorded=True, delivered_on_time=delivered_on_time)
