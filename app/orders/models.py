"""Tables: orders and their lines."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel

from app.db import utcnow


class OrderStatus(StrEnum):
    PLACED = "PLACED"
    PROCESSING = "PROCESSING"
    PACKED = "PACKED"
    PARTIALLY_SHIPPED = "PARTIALLY_SHIPPED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"
    PARTIALLY_RETURNED = "PARTIALLY_RETURNED"
    RETURNED = "RETURNED"


CANCELLABLE = frozenset({OrderStatus.PLACED, OrderStatus.PROCESSING, OrderStatus.PACKED})


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_orders_user_id_idempotency_key"),
        Index("ix_orders_user_id_placed_at", "user_id", "placed_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=16, unique=True, index=True)
    user_id: int = Field(foreign_key="users.id")
    status: str = Field(default=OrderStatus.PLACED.value, max_length=24, index=True)
    currency: str = Field(max_length=3)
    subtotal_minor: int
    shipping_minor: int
    tax_minor: int  # VAT included in the prices, shown for the invoice
    total_minor: int
    refunded_minor: int = Field(default=0)
    ship_name: str = Field(max_length=120)
    ship_line1: str = Field(max_length=200)
    ship_line2: str = Field(default="", max_length=200)
    ship_city: str = Field(max_length=100)
    ship_postal_code: str = Field(max_length=20)
    ship_country: str = Field(max_length=2)
    payment_brand: str = Field(max_length=20)
    payment_last4: str = Field(max_length=4)
    payment_reference: str = Field(max_length=64)
    idempotency_key: str = Field(max_length=100)
    request_fingerprint: str = Field(max_length=64)
    estimated_delivery: date  # moves with the carriers' estimates
    # The estimate promised at placement: set once, never moved (the promise to compare the
    # delivery with). None only for orders placed before it was recorded.
    promised_delivery: date | None = Field(default=None)
    placed_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    cancelled_at: datetime | None = Field(default=None)
    # When the order became DELIVERED: the carrier's time of its last parcel's delivery.
    delivered_at: datetime | None = Field(default=None)


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    product_id: int = Field(foreign_key="products.id")
    sku: str = Field(max_length=64)
    name: str = Field(max_length=200)
    unit_price_minor: int
    quantity: int


class CheckoutStatus(StrEnum):
    OPEN = "OPEN"
    PLACED = "PLACED"


class Checkout(SQLModel, table=True):
    """An order summary shown before purchase. Its code is reserved here and becomes the
    order's code when the checkout is placed, so the customer can note it in advance."""

    __tablename__ = "checkouts"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=16, unique=True, index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    status: str = Field(default=CheckoutStatus.OPEN.value, max_length=8)
    # [[sku, quantity, unit price at the time of the summary], ...]
    lines_json: str = Field(sa_column=Column(Text, nullable=False))
    currency: str = Field(max_length=3)
    subtotal_minor: int
    shipping_minor: int
    tax_minor: int
    total_minor: int
    ship_name: str = Field(max_length=120)
    ship_line1: str = Field(max_length=200)
    ship_line2: str = Field(default="", max_length=200)
    ship_city: str = Field(max_length=100)
    ship_postal_code: str = Field(max_length=20)
    ship_country: str = Field(max_length=2)
    estimated_delivery: date
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    order_id: int | None = Field(default=None, foreign_key="orders.id")


class ReservationStatus(StrEnum):
    RESERVED = "RESERVED"  # stock taken, payment not confirmed yet
    CONFIRMED = "CONFIRMED"  # charged, and the order exists (order_id)
    RELEASED = "RELEASED"  # not charged: the stock went back


class OrderReservation(SQLModel, table=True):
    """Stock and an order code held for a payment that is under way.

    placeOrder reserves in one short transaction, charges the card outside any transaction
    (with `payment_key` as the provider's idempotency key), then confirms — creates the
    order — in a second one (app/orders/placement.py). A process that dies in between
    leaves the reservation RESERVED; the reconciler asks the provider about `payment_key`
    and confirms it (charged) or releases it after `expires_at` (not charged). Customers
    never see a reservation: only the order it becomes.
    """

    __tablename__ = "order_reservations"
    __table_args__ = (
        UniqueConstraint(
            "user_id", "idempotency_key", name="uq_order_reservations_user_id_idempotency_key"
        ),
        Index("ix_order_reservations_status_next_check_at", "status", "next_check_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id")
    idempotency_key: str = Field(max_length=100)
    request_fingerprint: str = Field(max_length=64)
    code: str = Field(max_length=16, unique=True)  # the order's code once confirmed
    checkout_id: int | None = Field(default=None, foreign_key="checkouts.id")
    status: str = Field(default=ReservationStatus.RESERVED.value, max_length=16)
    attempt: int = Field(default=1)  # a released reservation may be tried again
    payment_key: str = Field(max_length=200)
    amount_minor: int
    currency: str = Field(max_length=3)
    # Everything the order will be made of: lines (product, sku, name, price, quantity),
    # totals, address and the promised delivery date, as JSON.
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    # When the reconciler looks at it next: soon while unknown, at its expiry once the
    # provider said it was not charged (only a retry could still charge it, and a retry
    # confirms by itself).
    next_check_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = Field(default=None)
    order_id: int | None = Field(default=None, foreign_key="orders.id")
