"""Per-request DataLoaders for fulfilment: a page of orders, their shipments, the
shipments' lines and tracking events each cost one SQL statement, however many there are."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.graphql.loaders import BatchLoader
from app.shipments.models import Shipment, TrackingEvent
from app.shipments.service import PickLine, ShippedLine

if TYPE_CHECKING:
    from app.container import Services


class ShipmentsByOrderIdLoader(BatchLoader[Shipment]):
    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[Shipment]]:
        return await services.shipments.shipments_for_orders(keys)


class TrackingEventsByShipmentIdLoader(BatchLoader[TrackingEvent]):
    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[TrackingEvent]]:
        return await services.shipments.events_for_shipments(keys)


class ShipmentLinesByShipmentIdLoader(BatchLoader[ShippedLine]):
    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[ShippedLine]]:
        return await services.shipments.lines_for_shipments(keys)


class PickLinesByOrderIdLoader(BatchLoader[PickLine]):
    """Lines with bin, packed and shipped quantities, sorted by bin location."""

    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[PickLine]]:
        return await services.shipments.pick_lines_for_orders(keys)
