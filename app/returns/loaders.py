"""Per-request DataLoaders of returns: the returns of a page of orders and their lines each
cost one SQL statement, however many orders or returns there are. Batching only
(`cache=False`), like the fulfilment loaders: a subscription's context lives long."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from strawberry.dataloader import DataLoader

from app.returns.models import ReturnRequest
from app.returns.service import ReturnedLine, ReturnService

if TYPE_CHECKING:
    from app.graphql.context import Context

Loader = TypeVar("Loader", bound="_Batched[Any]")
V = TypeVar("V")


class _Batched(DataLoader[int, list[V]]):
    def __init__(self, service: ReturnService) -> None:
        async def load(keys: list[int]) -> list[list[V]]:
            found = self.fetch(service, keys)
            return [found.get(key, []) for key in keys]

        super().__init__(load_fn=load, cache=False)

    def fetch(self, service: ReturnService, keys: list[int]) -> dict[int, list[V]]:
        raise NotImplementedError

    @classmethod
    def of(cls: type[Loader], context: Context) -> Loader:
        name = cls.__name__
        loader = context.loaders.get(name)
        if loader is None:
            loader = cls(context.services.returns)
            context.loaders[name] = loader
        assert isinstance(loader, cls)
        return loader


class ReturnsByOrderIdLoader(_Batched[ReturnRequest]):
    def fetch(self, service: ReturnService, keys: list[int]) -> dict[int, list[ReturnRequest]]:
        return service.returns_for_orders(sorted(set(keys)))


class ReturnLinesByReturnIdLoader(_Batched[ReturnedLine]):
    def fetch(self, service: ReturnService, keys: list[int]) -> dict[int, list[ReturnedLine]]:
        return service.lines_for_returns(sorted(set(keys)))
