"""Per-request DataLoaders of returns: the returns of a page of orders and their lines each
cost one SQL statement, however many orders or returns there are."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.graphql.loaders import BatchLoader
from app.returns.models import ReturnRequest
from app.returns.service import ReturnedLine

if TYPE_CHECKING:
    from app.container import Services


class ReturnsByOrderIdLoader(BatchLoader[ReturnRequest]):
    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[ReturnRequest]]:
        return await services.returns.returns_for_orders(keys)


class ReturnLinesByReturnIdLoader(BatchLoader[ReturnedLine]):
    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[ReturnedLine]]:
        return await services.returns.lines_for_returns(keys)
