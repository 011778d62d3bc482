"""Fulfilment and tracking: the service the API and the webhook call, a façade over one
module per use case — the queue and pick lists (`reads.py`), packing by scan (`pack.py`),
shipping (`ship.py`), tracking events by staff and carriers (`tracking.py`). What they share
(dependencies, door declarations, counts, the order's status change) is `fulfilment.py`.
"""

from __future__ import annotations

from app.audit.service import AuditLog
from app.db import Database
from app.events.broker import Broker
from app.pagination import CursorCodec
from app.security.doors import Doors
from app.security.lookups import CodeLookups
from app.shipments.fulfilment import FULFILMENT_READ_ROLES, Fulfilment
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
        reads = FulfilmentReads(deps)
        self.fulfillment_queue = reads.fulfillment_queue
        self.pick_list = reads.pick_list
        self.pick_lines_for_orders = reads.pick_lines_for_orders
        self.shipments_for_orders = reads.shipments_for_orders
        self.events_for_shipments = reads.events_for_shipments
        self.lines_for_shipments = reads.lines_for_shipments
        self.pack_order = Packing(deps).pack_order
        self.ship_order = Shipping(deps).ship_order
        tracking = TrackingEvents(deps)
        self.add_tracking_event = tracking.add_tracking_event
        self.record_carrier_event = tracking.record_carrier_event
