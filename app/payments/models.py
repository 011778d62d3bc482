"""The test payment provider's own ledger, and our own record of refunds in flight.

The ledger: the test provider plays an external payment service, so it lives outside the
application's schema and transactions: its own MetaData (not in the Alembic migrations),
its own engine, its own commits. On SQLite that is a separate file of its own, as a real
provider's data would be elsewhere.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table
from sqlmodel import Field, SQLModel

from app.db import utcnow

provider_metadata = MetaData()

test_provider_transactions = Table(
    "test_provider_transactions",
    provider_metadata,
    Column("id", Integer, primary_key=True),
    Column("reference", String(64), nullable=False, unique=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),  # charge | refund
    Column("amount_minor", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("brand", String(20), nullable=False, default=""),
    Column("last4", String(4), nullable=False, default=""),
    Column("charge_reference", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# -- ours: refunds on their way to the provider ----------------------------------------------


class RefundStatus(StrEnum):
    PENDING = "PENDING"  # decided and committed; the provider has not confirmed it yet
    DONE = "DONE"  # the provider refunded (provider_reference)


class PaymentRefund(SQLModel, table=True):
    """A refund the shop decided (a cancellation, a received return), written before the
    provider is called and completed after it answered (app/payments/refunds.py). Its
    amount counts against what may still be refunded from the moment it is written, so
    two refunds in flight can never together exceed what was paid."""

    __tablename__ = "payment_refunds"
    __table_args__ = (
        Index("ix_payment_refunds_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    return_id: int | None = Field(default=None, foreign_key="return_requests.id")
    reason: str = Field(max_length=16)  # cancel | return
    idempotency_key: str = Field(max_length=200, unique=True)
    amount_minor: int
    currency: str = Field(max_length=3)
    charge_reference: str = Field(max_length=64)
    status: str = Field(default=RefundStatus.PENDING.value, max_length=8)
    provider_reference: str | None = Field(default=None, max_length=64)
    requested_by: int | None = Field(default=None, foreign_key="users.id")
    automatic: bool = Field(default=False)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow)
    completed_at: datetime | None = Field(default=None)
