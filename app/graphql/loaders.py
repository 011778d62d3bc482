"""The one DataLoader shape of this API: lists of rows by integer key, one SQL statement
per batch, built once per request and kept in `Context.loaders` under its class name.

Loaders batch but do not cache (`cache=False`): a subscription keeps its context for the
life of the stream, and a cached row would go stale between two pushes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from strawberry.dataloader import DataLoader

if TYPE_CHECKING:
    from app.container import Services
    from app.graphql.context import Context

Loader = TypeVar("Loader", bound="BatchLoader[Any]")
V = TypeVar("V")


class BatchLoader(DataLoader[int, list[V]], Generic[V]):
    def __init__(self, services: Services) -> None:
        async def load(keys: list[int]) -> list[list[V]]:
            found = await self.fetch(services, sorted(set(keys)))
            return [found.get(key, []) for key in keys]

        super().__init__(load_fn=load, cache=False)

    async def fetch(self, services: Services, keys: list[int]) -> dict[int, list[V]]:
        """Rows for every key (distinct, sorted), in one statement."""
        raise NotImplementedError

    @classmethod
    def of(cls: type[Loader], context: Context) -> Loader:
        loader = context.loaders.get(cls.__name__)
        if loader is None:
            loader = cls(context.services)
            context.loaders[cls.__name__] = loader
        assert isinstance(loader, cls)
        return loader
