"""Per-request DataLoaders for fulfilment: a page of orders, their shipments, the
shipments' lines and tracking events each cost one SQL statement, however many there are.

Loaders batch but do not cache (`cache=False`): a subscription keeps its context for the
life of the stream, and a cached shipment would go stale between two pushes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.dataloader import DataLoader

from app.shipments.models import Shipment, TrackingEvent
from app.shipments.service import PickLine, ShipmentService, ShippedLine

if TYPE_CHECKING:
    from app.graphql.context import Context

Loader = TypeVar("Loader", bound="_Batched[Any]")
V = TypeVar("V")


class _Batched(DataLoader[int, list[V]]):
    """A loader of `list[V]` by integer key, built once per request and kept in
    `Context.loaders` under its class name."""

    def __init__(self, service: ShipmentService) -> None:
        async def load(keys: list[int]) -> list[list[V]]:
            found = self.fetch(service, keys)
            return [found.get(key, []) for key in keys]

        super().__init__(load_fn=load, cache=False)

    def fetch(self, service: ShipmentService, keys: list[int]) -> dict[int, list[V]]:
        raise NotImplementedError

    @classmethod
    def of(cls: type[Loader], context: Context) -> Loader:
        name = cls.__name__
        loader = context.loaders.get(name)
        if loader is None:
            loader = cls(context.services.shipments)
            context.loaders[name] = loader
        assert isinstance(loader, cls)
        return loader


class ShipmentsByOrderIdLoader(_Batched[Shipment]):
    def fetch(self, service: ShipmentService, keys: list[int]) -> dict[int, list[Shipment]]:
        return service.shipments_for_orders(sorted(set(keys)))


class TrackingEventsByShipmentIdLoader(_Batched[TrackingEvent]):
    def fetch(self, service: ShipmentService, keys: list[int]) -> dict[int, list[TrackingEvent]]:
        return service.events_for_shipments(sorted(set(keys)))


class ShipmentLinesByShipmentIdLoader(_Batched[ShippedLine]):
    def fetch(self, service: ShipmentService, keys: list[int]) -> dict[int, list[ShippedLine]]:
        return service.lines_for_shipments(sorted(set(keys)))


class PickLinesByOrderIdLoader(_Batched[PickLine]):
    """Lines with bin, packed and shipped quantities, sorted by bin location."""

    def fetch(self, service: ShipmentService, keys: list[int]) -> dict[int, list[PickLine]]:
        return service.pick_lines_for_orders(sorted(set(keys)))
