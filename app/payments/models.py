"""The test payment provider's own ledger.

It plays an external payment service, so it lives outside the application's schema and
transactions: its own MetaData (not in the Alembic migrations), its own engine, its own
commits. On SQLite that is a separate file, because one SQLite file has one writer at a
time and the order transaction holds it while the card is charged.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

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
