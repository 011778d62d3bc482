"""Reads of returns that other domains need (through `app.returns`)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.returns.models import ReturnLine, ReturnRequest, ReturnStatus

# Returns whose units are back in the warehouse.
COUNTED = (ReturnStatus.RECEIVED.value, ReturnStatus.REFUNDED.value)


async def returned_units(session: AsyncSession, order_id: int) -> int:
    """Units of an order that came back (received returns)."""
    total = (
        await session.execute(
            select(func.coalesce(func.sum(col(ReturnLine.received_quantity)), 0))
            .join(ReturnRequest, col(ReturnRequest.id) == col(ReturnLine.return_id))
            .where(col(ReturnRequest.order_id) == order_id, col(ReturnRequest.status).in_(COUNTED))
        )
    ).scalar_one()
    return int(total or 0)  # coalesce: never NULL (typed after the nullable column)
