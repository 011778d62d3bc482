"""Catalog use cases: the public product list, and pricing lookups for checkout."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import col

from app.catalog.models import Product
from app.db import Database
from app.pagination import CursorCodec, clamp_page_size


@dataclass(frozen=True)
class ProductPage:
    products: list[Product]
    cursors: list[str]
    has_next_page: bool


class CatalogService:
    def __init__(self, db: Database, cursors: CursorCodec, max_page_size: int) -> None:
        self._db = db
        self._cursors = cursors
        self._max = max_page_size

    async def list_products(self, first: int | None, after: str | None) -> ProductPage:
        size = clamp_page_size(first, self._max)
        query = select(Product).where(col(Product.active)).order_by(col(Product.sku))
        if after:
            (last_sku,) = self._cursors.decode("product", after)
            query = query.where(col(Product.sku) > str(last_sku))
        async with self._db.read() as session:
            rows = list((await session.execute(query.limit(size + 1))).scalars())
        page = rows[:size]
        return ProductPage(
            products=page,
            cursors=[self._cursors.encode("product", [p.sku]) for p in page],
            has_next_page=len(rows) > size,
        )
