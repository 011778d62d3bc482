"""An order's delivery address as printed in emails (shared with fulfilment and returns
through `app.orders`)."""

from __future__ import annotations

from app.orders.models import Order


def address_lines(order: Order) -> list[str]:
    parts = [
        order.ship_name,
        order.ship_line1,
        order.ship_line2,
        f"{order.ship_postal_code} {order.ship_city}",
        order.ship_country,
    ]
    return [p for p in parts if p]
