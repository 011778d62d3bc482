"""Table: products, with stock and the warehouse bin where they are picked."""

from __future__ import annotations

from sqlmodel import Field, SQLModel

import app.db  # noqa: F401  (sets the constraint naming convention before any table)


class Product(SQLModel, table=True):
    __tablename__ = "products"

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    price_minor: int
    currency: str = Field(default="EUR", max_length=3)
    stock: int = Field(default=0)
    bin_location: str = Field(default="", max_length=32)
    active: bool = Field(default=True)
