"""Fulfilment and tracking: the service the API and the webhook call, a façade over one
module per use case — the queue and pick lists (`reads.py`), packing by scan (`pack.py`),
shipping (`ship.py`), tracking events by staff and carriers (`tracking.py`). What they share
(dependencies, door declarations, counts, the order's status change) is `fulfilment.py`.
"""

from __future__ import annotations

from datetime import date

from app.audit.service import AuditLog
from app.db import Database
from app.events.broker import Broker
from app.orders.models import Order
from app.pagination import CursorCodec
from app.security.doors import Doors
from app.security.lookups import CodeLookups
from app.security.policy import Viewer
from app.shipments.fulfilment import FULFILMENT_READ_ROLES, Fulfilment
from app.shipments.inputs import EventInput, LineRequest
from app.shipments.models import Shipment, TrackingEvent
from app.shipments.pack import Packing
from app.shipments.reads import PICKABLE, FulfilmentReads
from app.shipments.results import (
    CarrierOutcome,
    EventResult,
    ItemCount,
    PackResult,
    PickLine,
    QueuePage,
    ScanMismatch,
    ShippedLine,
    ShipResult,
    bin_order,
    tracking_fingerprint,
)
from app.shipments.ship import Shipping
from app.shipments.tracking import MILESTONE_EMAILS, TrackingEvents
from app.unit_of_work import UnitsOfWork

__all__ = [
    "FULFILMENT_READ_ROLES",
    "MILESTONE_EMAILS",
    "PICKABLE",
    "CarrierOutcome",
    "EventResult",
    "ItemCount",
    "PackResult",
    "PickLine",
    "QueuePage",
    "ScanMismatch",
    "ShipResult",
    "ShipmentService",
    "ShippedLine",
    "bin_order",
    "tracking_fingerprint",
]


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
        audit = audit or AuditLog(db, cursors, max_page_size)
        deps = Fulfilment(
            db=db,
            units=UnitsOfWork(db, events),
            doors=Doors(lookups, audit),
            audit=audit,
            cursors=cursors,
            max_page_size=max_page_size,
            return_window_days=return_window_days,
        )
        self._reads = FulfilmentReads(deps)
        self._packing = Packing(deps)
        self._shipping = Shipping(deps)
        self._tracking = TrackingEvents(deps)

    # -- reads (reads.py) -----------------------------------------------------------------
    async def fulfillment_queue(
        self, viewer: Viewer | None, first: int | None, after: str | None
    ) -> QueuePage:
        return await self._reads.fulfillment_queue(viewer, first, after)

    async def pick_list(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> Order:
        return await self._reads.pick_list(viewer, raw_code, client_ip)

    async def pick_lines_for_orders(self, order_ids: list[int]) -> dict[int, list[PickLine]]:
        return await self._reads.pick_lines_for_orders(order_ids)

    async def shipments_for_orders(
        self, order_ids: list[int], summaries: bool = False
    ) -> dict[int, list[Shipment]]:
        return await self._reads.shipments_for_orders(order_ids, summaries)

    async def events_for_shipments(self, shipment_ids: list[int]) -> dict[int, list[TrackingEvent]]:
        return await self._reads.events_for_shipments(shipment_ids)

    async def lines_for_shipments(self, shipment_ids: list[int]) -> dict[int, list[ShippedLine]]:
        return await self._reads.lines_for_shipments(shipment_ids)

    # -- changes (pack.py, ship.py, tracking.py) ------------------------------------------
    async def pack_order(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        scanned_skus: list[str],
        lines: list[LineRequest] | None = None,
    ) -> PackResult:
        return await self._packing.pack_order(viewer, raw_code, client_ip, scanned_skus, lines)

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
        return await self._shipping.ship_order(
            viewer, raw_code, client_ip, carrier, tracking_number, lines, estimated_delivery
        )

    async def add_tracking_event(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        carrier: str,
        tracking_number: str,
        event: EventInput,
    ) -> EventResult:
        return await self._tracking.add_tracking_event(
            viewer, raw_code, client_ip, carrier, tracking_number, event
        )

    async def record_carrier_event(
        self, carrier: str, tracking_number: str, event: EventInput
    ) -> CarrierOutcome:
        return await self._tracking.record_carrier_event(carrier, tracking_number, event)
