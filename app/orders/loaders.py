"""Per-request DataLoaders of orders: the lines of a page of orders in one statement."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.graphql.loaders import BatchLoader
from app.orders.models import OrderLine

if TYPE_CHECKING:
    from app.container import Services


class OrderLinesByOrderIdLoader(BatchLoader[OrderLine]):
    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[OrderLine]]:
        return await services.orders.lines_for_orders(keys)
