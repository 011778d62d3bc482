"""What order use cases answer, and the checks they share (no database)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from app.catalog.models import Product
from app.errors import BadUserInput, Conflict
from app.orders.inputs import AddressInput, LineInput
from app.orders.models import Order, OrderLine
from app.orders.pricing import Totals


class OutOfStock(BadUserInput):
    default_message = "Not enough stock."


class PriceChanged(Conflict):
    default_message = "Prices changed since the summary; review the new total and confirm again."


def check_prices(
    lines: list[LineInput], products: dict[str, Product], expected: dict[str, int]
) -> None:
    """Refuse to charge anything the customer was not shown."""
    changes = [
        {"sku": line.sku, "was": expected.get(line.sku), "now": products[line.sku].price_minor}
        for line in lines
        if expected.get(line.sku) != products[line.sku].price_minor
    ]
    if changes:
        detail = ", ".join(f"{c['sku']}: {c['was']} → {c['now']}" for c in changes)
        raise PriceChanged(
            f"Prices changed since the summary ({detail}, in minor units). Review the "
            "checkout (updateCheckout reprices it) and confirm again.",
            field="checkoutCode",
            details={"changes": changes},
        )


@dataclass(frozen=True)
class OrderView:
    order: Order
    lines: list[OrderLine] | None  # None: left to the API's loader


@dataclass(frozen=True)
class OrderFilter:
    statuses: list[str] = field(default_factory=list)
    placed_from: datetime | None = None
    placed_to: datetime | None = None
    text: str | None = None


@dataclass(frozen=True)
class OrderPage:
    orders: list[OrderView]
    cursors: list[str]
    has_next_page: bool


@dataclass(frozen=True)
class DraftLine:
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    available: bool
    in_stock: int


@dataclass(frozen=True)
class CartDraft:
    lines: list[DraftLine]
    currency: str
    totals: Totals
    unavailable_skus: list[str]


def fingerprint(lines: list[LineInput], address: AddressInput, payment_token: str) -> str:
    canonical = json.dumps(
        {
            "lines": sorted((line.sku, line.quantity) for line in lines),
            "address": address.__dict__,
            "payment": payment_token,
        },
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
