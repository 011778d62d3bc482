"""Catalog: the public product list."""

from __future__ import annotations

import strawberry

from app.catalog.types import ProductConnection, ProductEdge, ProductType
from app.graphql.common import PageInfo
from app.graphql.context import Info


@strawberry.type
class CatalogQuery:
    @strawberry.field(description="Products for sale, by SKU. Public.")
    async def products(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> ProductConnection:
        page = await info.context.services.catalog.list_products(first, after)
        edges = [
            ProductEdge(cursor=cursor, node=ProductType(row=product))
            for product, cursor in zip(page.products, page.cursors, strict=True)
        ]
        return ProductConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )
