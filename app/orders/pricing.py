"""Pure pricing and delivery-date rules (no I/O), shared by checkout, orders and reorder.

Prices include VAT. Shipping is a flat fee, free from a threshold. The VAT shown is the
part of the total that is tax: total * rate / (1 + rate), rounded half up to a minor unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Totals:
    subtotal_minor: int
    shipping_minor: int
    tax_minor: int
    total_minor: int


def compute_totals(
    line_totals: list[int], *, shipping_flat: int, free_from: int, tax_basis_points: int
) -> Totals:
    subtotal = sum(line_totals)
    shipping = 0 if subtotal >= free_from else shipping_flat
    total = subtotal + shipping
    tax = (total * tax_basis_points * 2 + (10000 + tax_basis_points)) // (
        2 * (10000 + tax_basis_points)
    )
    return Totals(subtotal, shipping, tax, total)


def add_business_days(start: date, days: int) -> date:
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            remaining -= 1
    return current
