"""Fulfilment reads: the queue, a pick list, and the batch reads behind the API's loaders
(every order and parcel of a page in one statement each, prebuilt and run straight through
the driver by Database.fetch_all)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select
from sqlmodel import col

from app.db_rows import as_models, as_partial_models
from app.orders.models import Order, OrderLine, OrderStatus
from app.pagination import clamp_page_size
from app.security.policy import Viewer, require_role
from app.shipments.fulfilment import (
    FULFILMENT_READ_ROLES,
    PICK_LIST,
    Fulfilment,
    find_order,
    pick_lines,
)
from app.shipments.models import PackLine, Shipment, ShipmentLine, TrackingEvent
from app.shipments.results import PickLine, QueuePage, ShippedLine
from app.tables import table

_SHIPMENT = table(Shipment)
_EVENT = table(TrackingEvent)
_SHIPMENTS_OF_ORDERS = (
    select(*_SHIPMENT.columns)
    .where(_SHIPMENT.c.order_id.in_(bindparam("ids", expanding=True)))
    .order_by(_SHIPMENT.c.shipped_at, _SHIPMENT.c.id)
)
# What a history list shows of an order's parcels (app/shipments/types.py
# SHIPMENT_SUMMARY_FIELDS are answered from these alone): 5 of the parcel's 11 columns.
SHIPMENT_SUMMARY_COLUMNS = ("id", "order_id", "carrier", "status", "estimated_delivery")
_SHIPMENT_SUMMARIES_OF_ORDERS = (
    select(*(_SHIPMENT.c[name] for name in SHIPMENT_SUMMARY_COLUMNS))
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
        table(ShipmentLine).c.shipment_id,
        table(OrderLine).c.sku,
        table(OrderLine).c.name,
        table(ShipmentLine).c.quantity,
    )
    .join(
        table(OrderLine),
        table(OrderLine).c.id == table(ShipmentLine).c.order_line_id,
    )
    .where(table(ShipmentLine).c.shipment_id.in_(bindparam("ids", expanding=True)))
    .order_by(table(ShipmentLine).c.id)
)
# Orders with units still to pick (PARTIALLY_SHIPPED ones only while something is unpacked).
PICKABLE = (OrderStatus.PLACED, OrderStatus.PROCESSING, OrderStatus.PARTIALLY_SHIPPED)


class FulfilmentReads:
    def __init__(self, deps: Fulfilment) -> None:
        self._deps = deps

    async def fulfillment_queue(
        self, viewer: Viewer | None, first: int | None, after: str | None
    ) -> QueuePage:
        """Orders with units still to pick, oldest first (keyset on placed_at, code)."""
        deps = self._deps
        who = require_role(viewer, *FULFILMENT_READ_ROLES)
        await deps.audit.record(actor=who, action="fulfillment_queue", outcome="listed")
        size = clamp_page_size(first, deps.max_page_size)
        ordered = (
            select(func.coalesce(func.sum(col(OrderLine.quantity)), 0))
            .where(col(OrderLine.order_id) == col(Order.id))
            .correlate(Order)
            .scalar_subquery()
        )
        packed = (
            select(func.coalesce(func.sum(col(PackLine.quantity)), 0))
            .join(OrderLine, col(OrderLine.id) == col(PackLine.order_line_id))
            .where(col(OrderLine.order_id) == col(Order.id))
            .correlate(Order)
            .scalar_subquery()
        )
        query = select(Order).where(
            col(Order.status).in_([s.value for s in PICKABLE]), ordered > packed
        )
        if after:
            placed_iso, last_code = deps.cursors.decode("queue", after)
            placed = datetime.fromisoformat(str(placed_iso))
            query = query.where(
                or_(
                    col(Order.placed_at) > placed,
                    and_(col(Order.placed_at) == placed, col(Order.code) > str(last_code)),
                )
            )
        query = query.order_by(col(Order.placed_at).asc(), col(Order.code).asc()).limit(size + 1)
        async with deps.db.read() as session:
            rows = list((await session.execute(query)).scalars())
        page = rows[:size]
        return QueuePage(
            orders=page,
            cursors=[deps.cursors.encode("queue", [o.placed_at.isoformat(), o.code]) for o in page],
            has_next_page=len(rows) > size,
        )

    async def pick_list(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> Order:
        """The order to pick; its lines (sorted by bin) are loaded by the API in one batch."""
        deps = self._deps
        entry = await deps.doors.enter(PICK_LIST, viewer, raw_code, client_ip)
        async with entry.misses(), deps.db.read() as session:
            order = await find_order(session, entry.code, lock=False)
        await deps.audit.record(
            actor=entry.who,
            action="pick_list",
            outcome="found",
            order_id=order.id,
            code=order.code,
            client_ip=client_ip,
        )
        return order

    # -- batch loaders (one statement for any number of keys) ---------------------------
    async def pick_lines_for_orders(self, order_ids: list[int]) -> dict[int, list[PickLine]]:
        async with self._deps.db.read() as session:
            return await pick_lines(session, order_ids)

    async def shipments_for_orders(
        self, order_ids: list[int], summaries: bool = False
    ) -> dict[int, list[Shipment]]:
        """Parcels of many orders in one statement, oldest first. With `summaries`, they
        hold only SHIPMENT_SUMMARY_COLUMNS (reading another field of them raises)."""
        result: dict[int, list[Shipment]] = {order_id: [] for order_id in order_ids}
        statement = _SHIPMENT_SUMMARIES_OF_ORDERS if summaries else _SHIPMENTS_OF_ORDERS
        rows = await self._deps.db.fetch_all(statement, {"ids": order_ids})
        build = as_partial_models if summaries else as_models
        for shipment in build(Shipment, statement, rows):
            result[shipment.order_id].append(shipment)
        return result

    async def events_for_shipments(self, shipment_ids: list[int]) -> dict[int, list[TrackingEvent]]:
        """Newest first (by when it happened, then by when we heard of it)."""
        result: dict[int, list[TrackingEvent]] = {shipment_id: [] for shipment_id in shipment_ids}
        rows = await self._deps.db.fetch_all(_EVENTS_OF_SHIPMENTS, {"ids": shipment_ids})
        for row in as_models(TrackingEvent, _EVENTS_OF_SHIPMENTS, rows):
            result[row.shipment_id].append(row)
        return result

    async def lines_for_shipments(self, shipment_ids: list[int]) -> dict[int, list[ShippedLine]]:
        result: dict[int, list[ShippedLine]] = {shipment_id: [] for shipment_id in shipment_ids}
        rows = await self._deps.db.fetch_all(_LINES_OF_SHIPMENTS, {"ids": shipment_ids})
        for shipment_id, sku, name, quantity in rows:
            result[shipment_id].append(ShippedLine(sku, name, quantity))
        return result
