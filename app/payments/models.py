"""Table of the test payment provider: it plays an external system, so it keeps its own ledger."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.db import utcnow


class TestProviderTransaction(SQLModel, table=True):
    __tablename__ = "test_provider_transactions"
    __test__ = False  # not a pytest class

    id: int | None = Field(default=None, primary_key=True)
    reference: str = Field(max_length=64, unique=True)
    idempotency_key: str = Field(max_length=200, unique=True, index=True)
    kind: str = Field(max_length=8)  # charge | refund | void
    amount_minor: int
    currency: str = Field(max_length=3)
    brand: str = Field(default="", max_length=20)
    last4: str = Field(default="", max_length=4)
    charge_reference: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
