"""GraphQL types of the catalog."""

from __future__ import annotations

import strawberry

from app.catalog.models import Product as ProductRow
from app.graphql.common import Money, PageInfo


@strawberry.type(name="Product")
class ProductType:
    row: strawberry.Private[ProductRow]

    @strawberry.field
    def sku(self) -> str:
        return self.row.sku

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def description(self) -> str:
        return self.row.description

    @strawberry.field
    def price(self) -> Money:
        return Money(amount=self.row.price_minor, currency=self.row.currency)

    @strawberry.field(description="Units that can be ordered now.")
    def in_stock(self) -> int:
        return max(self.row.stock, 0)


@strawberry.type
class ProductEdge:
    cursor: str
    node: ProductType


@strawberry.type
class ProductConnection:
    edges: list[ProductEdge]
    page_info: PageInfo
