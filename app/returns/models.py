"""Tables of returns: a return request (its RMA code, status and refund) and its lines.

A return line is one order line *from one delivered shipment*: the return window runs
from that shipment's delivery, so units are tracked per (order line, shipment) and a unit
delivered long ago cannot ride on a recent parcel's window.

Who acted (approved_by, received_by, ...) is kept for the record and never exposed to
customers; the audit log holds the staff steps.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.db import utcnow


class ReturnStatus(StrEnum):
    REQUESTED = "REQUESTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    RECEIVED = "RECEIVED"
    REFUNDED = "REFUNDED"


class ReturnReason(StrEnum):
    DAMAGED = "DAMAGED"
    DEFECTIVE = "DEFECTIVE"
    WRONG_ITEM = "WRONG_ITEM"
    NOT_AS_DESCRIBED = "NOT_AS_DESCRIBED"
    NO_LONGER_NEEDED = "NO_LONGER_NEEDED"
    OTHER = "OTHER"


class ReturnRequest(SQLModel, table=True):
    __tablename__ = "return_requests"

    id: int | None = Field(default=None, primary_key=True)
    rma_code: str = Field(max_length=16, unique=True, index=True)
    order_id: int = Field(foreign_key="orders.id", index=True)
    status: str = Field(default=ReturnStatus.REQUESTED.value, max_length=16)
    reason: str = Field(max_length=24)
    comment: str = Field(default="", max_length=1000)
    rejection_reason: str | None = Field(default=None, max_length=500)
    currency: str = Field(max_length=3)
    refund_minor: int | None = Field(default=None)
    refund_reference: str | None = Field(default=None, max_length=64)
    requested_at: datetime = Field(default_factory=utcnow)
    approved_at: datetime | None = Field(default=None)
    rejected_at: datetime | None = Field(default=None)
    received_at: datetime | None = Field(default=None)
    refunded_at: datetime | None = Field(default=None)
    updated_at: datetime = Field(default_factory=utcnow)
    approved_by: int | None = Field(default=None, foreign_key="users.id")
    rejected_by: int | None = Field(default=None, foreign_key="users.id")
    received_by: int | None = Field(default=None, foreign_key="users.id")
    refunded_by: int | None = Field(default=None, foreign_key="users.id")


class ReturnLine(SQLModel, table=True):
    __tablename__ = "return_lines"
    __table_args__ = (
        UniqueConstraint(
            "return_id",
            "order_line_id",
            "shipment_id",
            name="uq_return_lines_return_id_order_line_id_shipment_id",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    return_id: int = Field(foreign_key="return_requests.id", index=True)
    order_line_id: int = Field(foreign_key="order_lines.id", index=True)
    shipment_id: int = Field(foreign_key="shipments.id", index=True)
    quantity: int  # units asked for
    received_quantity: int | None = Field(default=None)  # units that came back (on receipt)
